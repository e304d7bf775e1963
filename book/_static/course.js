// Marks the boxes that scroll sideways (tables, display equations, printed tables) with
// "course-more-left" / "course-more-right" while more of them is hidden on that side;
// course.css fades that edge, so that a reader on a phone sees that the box scrolls.
(function () {
  "use strict";
  const BOXES = [
    ".pst-scrollable-table-container",
    'div.math mjx-container[display="true"]',
    "div.course-columns pre",
  ].join(", ");
  const sizes = new ResizeObserver((entries) => entries.forEach((entry) => mark(entry.target)));

  function mark(box) {
    const hidden = box.scrollWidth - box.clientWidth;
    box.classList.toggle("course-more-left", hidden > 1 && box.scrollLeft > 1);
    box.classList.toggle("course-more-right", hidden > 1 && box.scrollLeft < hidden - 1);
  }

  function watch() {
    document.querySelectorAll(BOXES).forEach((box) => {
      mark(box);
      sizes.observe(box);
    });
  }

  document.addEventListener(
    "scroll",
    (event) => {
      if (event.target instanceof Element && event.target.matches(BOXES)) mark(event.target);
    },
    true,
  );
  window.addEventListener("load", () => {
    watch();
    // MathJax typesets after the page has loaded: watch the equations once it is done.
    const startup = window.MathJax && window.MathJax.startup;
    if (startup && startup.promise) startup.promise.then(watch);
  });
})();
