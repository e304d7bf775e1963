"""The lexicon of the course corpus: English and French words with what grammar needs.

Every noun has its French gender and both numbers; every adjective its four French
forms and its position (most follow the noun, a few precede it); every verb its English
third-person form and its French present-tense forms for je / il-elle / nous / ils-elles
(and a past participle for the perfect). Nouns belong to semantic classes, which verbs
use to choose sensible objects, and to topics, which group sentences into documents.

Ambiguous English words are listed twice, once per sense, with different French words:
apple (fruit / the company), saw (the past of see / the tool), bank (money / river),
bat (animal / sports), watch (to look at / the timepiece), light (not heavy / lamp light).
"""

from __future__ import annotations

from dataclasses import dataclass

TOPICS = ("food", "technology", "woodworking", "animals", "sports", "finance", "nature")


@dataclass(frozen=True)
class Noun:
    key: str  # unique id, e.g. "apple/fruit"
    en: str
    en_pl: str
    fr: str
    fr_pl: str
    gender: str  # "m" or "f"
    cls: str  # semantic class: person, food, device, tool, wood, animal, gear, place, money, ...
    topics: tuple[str, ...]

    @property
    def invariant(self) -> bool:
        """English singular and plural are the same word (fish, sheep)."""
        return self.en == self.en_pl


@dataclass(frozen=True)
class Adjective:
    en: str
    fr: tuple[str, str, str, str]  # m.sg, f.sg, m.pl, f.pl
    before: bool  # placed before the noun in French
    classes: tuple[str, ...]  # noun classes, or single noun keys, it describes (a sharp knife, not a sharp drill)


@dataclass(frozen=True)
class Verb:
    key: str
    en: str  # base form: eat
    en_3sg: str  # eats
    fr: tuple[str, str, str, str]  # je, il/elle, nous, ils/elles
    subjects: tuple[str, ...]  # classes (or noun keys) of possible subjects
    objects: tuple[str, ...]  # classes (or noun keys) of possible objects
    past: bool = False  # only used in the perfect (saw -> a vu)
    participle: str = ""
    exclude: tuple[str, ...] = ()  # noun keys that make no sense with it (cut the soup, carry the cow)


def _n(key, en, en_pl, fr, fr_pl, gender, cls, *topics) -> Noun:
    return Noun(key, en, en_pl, fr, fr_pl, gender, cls, tuple(topics))


ALL = TOPICS
NOUNS: tuple[Noun, ...] = (
    # people (any topic)
    _n("man", "man", "men", "homme", "hommes", "m", "person", *ALL),
    _n("woman", "woman", "women", "femme", "femmes", "f", "person", *ALL),
    _n("child", "child", "children", "enfant", "enfants", "m", "person", *ALL),
    _n("boy", "boy", "boys", "garçon", "garçons", "m", "person", *ALL),
    _n("girl", "girl", "girls", "fille", "filles", "f", "person", *ALL),
    _n("student", "student", "students", "étudiant", "étudiants", "m", "person", *ALL),
    _n("cook", "cook", "cooks", "cuisinier", "cuisiniers", "m", "person", "food"),
    _n("engineer", "engineer", "engineers", "ingénieur", "ingénieurs", "m", "person", "technology"),
    _n("carpenter", "carpenter", "carpenters", "menuisier", "menuisiers", "m", "person", "woodworking"),
    # English names of professions carry no gender, so the French target must not either:
    # the generic masculine, as French uses for a person whose gender is not given.
    _n("farmer", "farmer", "farmers", "fermier", "fermiers", "m", "person", "animals", "nature"),
    _n("player", "player", "players", "joueur", "joueurs", "m", "person", "sports"),
    _n("banker", "banker", "bankers", "banquier", "banquiers", "m", "person", "finance"),
    _n("doctor", "doctor", "doctors", "médecin", "médecins", "m", "person", *ALL),
    _n("baker", "baker", "bakers", "boulanger", "boulangers", "m", "person", "food"),
    _n("fisherman", "fisherman", "fishermen", "pêcheur", "pêcheurs", "m", "person", "nature"),
    # food
    _n("apple/fruit", "apple", "apples", "pomme", "pommes", "f", "food", "food"),
    _n("orange", "orange", "oranges", "orange", "oranges", "f", "food", "food"),
    _n("loaf", "loaf", "loaves", "pain", "pains", "m", "food", "food"),
    _n("cake", "cake", "cakes", "gâteau", "gâteaux", "m", "food", "food"),
    _n("cheese", "cheese", "cheeses", "fromage", "fromages", "m", "food", "food"),
    _n("egg", "egg", "eggs", "œuf", "œufs", "m", "food", "food"),
    _n("soup", "soup", "soups", "soupe", "soupes", "f", "food", "food"),
    _n("pear", "pear", "pears", "poire", "poires", "f", "food", "food"),
    _n("banana", "banana", "bananas", "banane", "bananes", "f", "food", "food"),
    _n("carrot", "carrot", "carrots", "carotte", "carottes", "f", "food", "food"),
    _n("tomato", "tomato", "tomatoes", "tomate", "tomates", "f", "food", "food"),
    _n("lemon", "lemon", "lemons", "citron", "citrons", "m", "food", "food"),
    _n("cherry", "cherry", "cherries", "cerise", "cerises", "f", "food", "food"),
    _n("strawberry", "strawberry", "strawberries", "fraise", "fraises", "f", "food", "food"),
    _n("chicken", "chicken", "chickens", "poulet", "poulets", "m", "food", "food"),
    # technology
    _n("phone", "phone", "phones", "téléphone", "téléphones", "m", "device", "technology"),
    _n("computer", "computer", "computers", "ordinateur", "ordinateurs", "m", "device", "technology"),
    _n("screen", "screen", "screens", "écran", "écrans", "m", "device", "technology"),
    _n("watch/time", "watch", "watches", "montre", "montres", "f", "device", "technology"),
    _n("television", "television", "televisions", "télévision", "télévisions", "f", "device", "technology"),
    # a light one buys, sells or breaks is a lamp ("lumière" is the light it gives)
    _n("light/lamp", "light", "lights", "lampe", "lampes", "f", "device", "technology"),
    _n("tablet", "tablet", "tablets", "tablette", "tablettes", "f", "device", "technology"),
    _n("keyboard", "keyboard", "keyboards", "clavier", "claviers", "m", "device", "technology"),
    _n("printer", "printer", "printers", "imprimante", "imprimantes", "f", "device", "technology"),
    _n("robot", "robot", "robots", "robot", "robots", "m", "device", "technology"),
    _n("radio", "radio", "radios", "radio", "radios", "f", "device", "technology"),
    _n("cable", "cable", "cables", "câble", "câbles", "m", "device", "technology"),
    # woodworking
    _n("saw/tool", "saw", "saws", "scie", "scies", "f", "tool", "woodworking"),
    _n("hammer", "hammer", "hammers", "marteau", "marteaux", "m", "tool", "woodworking"),
    _n("knife", "knife", "knives", "couteau", "couteaux", "m", "tool", "woodworking", "food"),
    _n("table", "table", "tables", "table", "tables", "f", "wood", "woodworking"),
    _n("chair", "chair", "chairs", "chaise", "chaises", "f", "wood", "woodworking"),
    _n("box", "box", "boxes", "boîte", "boîtes", "f", "wood", "woodworking"),
    _n("plank", "plank", "planks", "planche", "planches", "f", "wood", "woodworking"),
    _n("shelf", "shelf", "shelves", "étagère", "étagères", "f", "wood", "woodworking"),
    _n("bench", "bench", "benches", "banc", "bancs", "m", "wood", "woodworking"),
    _n("ladder", "ladder", "ladders", "échelle", "échelles", "f", "wood", "woodworking"),
    _n("drill", "drill", "drills", "perceuse", "perceuses", "f", "tool", "woodworking"),
    _n("nail", "nail", "nails", "clou", "clous", "m", "tool", "woodworking"),
    _n("screw", "screw", "screws", "vis", "vis", "f", "tool", "woodworking"),
    # animals
    _n("cat", "cat", "cats", "chat", "chats", "m", "animal", "animals"),
    _n("dog", "dog", "dogs", "chien", "chiens", "m", "animal", "animals"),
    _n("bird", "bird", "birds", "oiseau", "oiseaux", "m", "animal", "animals", "nature"),
    _n("horse", "horse", "horses", "cheval", "chevaux", "m", "animal", "animals"),
    _n("cow", "cow", "cows", "vache", "vaches", "f", "animal", "animals"),
    _n("rabbit", "rabbit", "rabbits", "lapin", "lapins", "m", "animal", "animals"),
    _n("sheep", "sheep", "sheep", "mouton", "moutons", "m", "animal", "animals"),
    _n("goat", "goat", "goats", "chèvre", "chèvres", "f", "animal", "animals"),
    _n("mouse", "mouse", "mice", "souris", "souris", "f", "animal", "animals"),
    _n("pig", "pig", "pigs", "cochon", "cochons", "m", "animal", "animals"),
    _n("hen", "hen", "hens", "poule", "poules", "f", "animal", "animals"),
    _n("bat/animal", "bat", "bats", "chauve-souris", "chauves-souris", "f", "animal", "animals", "nature"),
    _n("fish", "fish", "fish", "poisson", "poissons", "m", "animal", "nature", "animals"),
    _n("duck", "duck", "ducks", "canard", "canards", "m", "animal", "nature"),
    _n("frog", "frog", "frogs", "grenouille", "grenouilles", "f", "animal", "nature"),
    # sports
    _n("ball", "ball", "balls", "balle", "balles", "f", "gear", "sports"),
    _n("bat/sports", "bat", "bats", "batte", "battes", "f", "gear", "sports"),
    _n("racket", "racket", "rackets", "raquette", "raquettes", "f", "gear", "sports"),
    _n("helmet", "helmet", "helmets", "casque", "casques", "m", "gear", "sports"),
    _n("net", "net", "nets", "filet", "filets", "m", "gear", "sports"),
    _n("glove", "glove", "gloves", "gant", "gants", "m", "gear", "sports"),
    _n("shoe", "shoe", "shoes", "chaussure", "chaussures", "f", "gear", "sports"),
    _n("trophy", "trophy", "trophies", "trophée", "trophées", "m", "gear", "sports"),
    # finance
    _n("account", "account", "accounts", "compte", "comptes", "m", "account", "finance"),
    _n("coin", "coin", "coins", "pièce", "pièces", "f", "money", "finance"),
    _n("check", "check", "checks", "chèque", "chèques", "m", "money", "finance"),
    _n("bill", "bill", "bills", "facture", "factures", "f", "money", "finance"),
    _n("card", "card", "cards", "carte", "cartes", "f", "money", "finance"),
    _n("wallet", "wallet", "wallets", "portefeuille", "portefeuilles", "m", "money", "finance"),
    # nature
    _n("tree", "tree", "trees", "arbre", "arbres", "m", "plant", "nature"),
    _n("flower", "flower", "flowers", "fleur", "fleurs", "f", "plant", "nature"),
    _n("leaf", "leaf", "leaves", "feuille", "feuilles", "f", "plant", "nature"),
    _n("stone", "stone", "stones", "pierre", "pierres", "f", "mineral", "nature"),
)

# Places for prepositional phrases, by topic; PLACE_PREPOSITIONS says which prepositions fit each.
PLACES: tuple[Noun, ...] = (
    _n("kitchen", "kitchen", "kitchens", "cuisine", "cuisines", "f", "place", "food"),
    _n("market", "market", "markets", "marché", "marchés", "m", "place", "food", "finance"),
    _n("office", "office", "offices", "bureau", "bureaux", "m", "place", "technology", "finance"),
    _n("workshop", "workshop", "workshops", "atelier", "ateliers", "m", "place", "woodworking"),
    _n("garden", "garden", "gardens", "jardin", "jardins", "m", "place", "animals", "nature"),
    _n("farm", "farm", "farms", "ferme", "fermes", "f", "place", "animals"),
    _n("stadium", "stadium", "stadiums", "stade", "stades", "m", "place", "sports"),
    _n("bank/money", "bank", "banks", "banque", "banques", "f", "place", "finance"),
    _n("bank/river", "bank", "banks", "rive", "rives", "f", "place", "nature"),
    _n("river", "river", "rivers", "rivière", "rivières", "f", "place", "nature"),
    _n("lake", "lake", "lakes", "lac", "lacs", "m", "place", "nature"),
    _n("school", "school", "schools", "école", "écoles", "f", "place", *ALL),
)

# English preposition -> French preposition for places ("near" takes "de", "at" takes "à").
PREPOSITIONS = {"in": "dans", "near": "près de", "at": "à", "behind": "derrière", "on": "sur"}

# Which prepositions make sense with each place: in the kitchen, not at the kitchen; near
# the lake, not in it (she cuts the tree in the lake); on or near the river bank.
_ALL_FOUR = ("in", "near", "at", "behind")
PLACE_PREPOSITIONS = {
    "kitchen": ("in", "near"), "market": _ALL_FOUR, "office": _ALL_FOUR, "workshop": ("in", "near", "behind"),
    "garden": ("in", "near", "behind"), "farm": ("at", "near", "behind"), "stadium": _ALL_FOUR,
    "bank/money": _ALL_FOUR, "bank/river": ("on", "near"), "river": ("near",), "lake": ("near",),
    "school": _ALL_FOUR,
}

ADJECTIVES: tuple[Adjective, ...] = (
    # after the noun
    Adjective("red", ("rouge", "rouge", "rouges", "rouges"), False,
              ("device", "tool", "gear", "wood", "apple/fruit", "tomato", "cherry", "strawberry")),
    Adjective("green", ("vert", "verte", "verts", "vertes"), False,
              ("device", "gear", "wood", "apple/fruit", "pear", "lemon", "tomato", "leaf")),
    Adjective("black", ("noir", "noire", "noirs", "noires"), False, ("device", "tool", "animal", "gear", "wood")),
    Adjective("white", ("blanc", "blanche", "blancs", "blanches"), False, ("device", "animal", "gear", "wood", "cheese", "egg", "loaf")),
    Adjective("fast", ("rapide", "rapide", "rapides", "rapides"), False, ("animal", "person")),
    Adjective("heavy", ("lourd", "lourde", "lourds", "lourdes"), False, ("tool", "wood", "gear", "device")),
    Adjective("light", ("léger", "légère", "légers", "légères"), False, ("tool", "wood", "gear", "device")),
    Adjective("expensive", ("cher", "chère", "chers", "chères"), False, ("device", "tool", "gear", "food")),
    Adjective("delicious", ("délicieux", "délicieuse", "délicieux", "délicieuses"), False, ("food",)),
    Adjective("fresh", ("frais", "fraîche", "frais", "fraîches"), False, ("food",)),
    Adjective("modern", ("moderne", "moderne", "modernes", "modernes"), False, ("device",)),
    Adjective("wild", ("sauvage", "sauvage", "sauvages", "sauvages"), False, ("animal",)),
    Adjective("sharp", ("tranchant", "tranchante", "tranchants", "tranchantes"), False, ("knife", "saw/tool")),
    Adjective("happy", ("heureux", "heureuse", "heureux", "heureuses"), False, ("person", "animal")),
    Adjective("blue", ("bleu", "bleue", "bleus", "bleues"), False, ("device", "gear", "wood")),
    Adjective("yellow", ("jaune", "jaune", "jaunes", "jaunes"), False,
              ("banana", "lemon", "pear", "flower", "leaf", "ball", "shoe", "helmet", "radio", "box", "chair")),
    # "doux" is soft fur, not soft food (which is "mou" or "tendre", and reads as stale)
    Adjective("soft", ("doux", "douce", "doux", "douces"), False, ("animal",)),
    Adjective("broken", ("cassé", "cassée", "cassés", "cassées"), False, ("device", "tool", "wood")),
    # before the noun
    Adjective("small", ("petit", "petite", "petits", "petites"), True, ("food", "device", "tool", "animal", "person", "wood", "gear")),
    # not on people: "un grand homme" is a great man, "une bonne femme" a familiar expression
    Adjective("big", ("grand", "grande", "grands", "grandes"), True, ("device", "animal", "wood", "tool")),
    Adjective("good", ("bon", "bonne", "bons", "bonnes"), True, ("food", "tool", "gear")),
    Adjective("pretty", ("joli", "jolie", "jolis", "jolies"), True, ("animal", "wood", "device")),
)

ANY_OBJECT = ("food", "device", "tool", "wood", "animal", "gear", "money", "account", "plant", "mineral")
# Relative weights when a noun or a place is drawn (default 1). They make the senses of
# each ambiguous noun frequent enough to learn (roughly 60 to 140 training sentences each)
# and about equally frequent: the bat (animal) can be a subject and an object in two
# topics, the bat (sports) only an object in one; the company is a subject of one verb and
# an object of another; the river bank is one of five places of its topic.
DRAW_WEIGHT = {"bat/animal": 1.5, "bat/sports": 5.0, "bank/river": 3.0, "bank/money": 1.5,
               "apple/company": 2.5, "apple/fruit": 1.5}

# animals too big to carry
_BIG_ANIMALS = ("horse", "cow", "pig", "goat", "sheep")
VERBS: tuple[Verb, ...] = (
    Verb("eat", "eat", "eats", ("mange", "mange", "mangeons", "mangent"), ("person", "animal"), ("food",)),
    Verb("like", "like", "likes", ("aime", "aime", "aimons", "aiment"), ("person",), ANY_OBJECT + ("company",)),
    Verb("buy", "buy", "buys", ("achète", "achète", "achetons", "achètent"), ("person",), ("food", "device", "tool", "gear", "wood")),
    Verb("cut", "cut", "cuts", ("coupe", "coupe", "coupons", "coupent"), ("person", "knife", "saw/tool"),
         ("food", "plank", "plant"), exclude=("soup", "egg")),
    Verb("use", "use", "uses", ("utilise", "utilise", "utilisons", "utilisent"), ("person",), ("device", "tool", "gear"),
         exclude=("trophy",)),
    Verb("sell", "sell", "sells", ("vends", "vend", "vendons", "vendent"), ("person", "company"), ("food", "device", "tool", "gear")),
    Verb("watch/look", "watch", "watches", ("regarde", "regarde", "regardons", "regardent"), ("person", "animal"), ("animal", "person", "device", "plant")),
    Verb("carry", "carry", "carries", ("porte", "porte", "portons", "portent"), ("person",),
         ("food", "tool", "gear", "wood", "animal", "mineral"), exclude=_BIG_ANIMALS + ("soup",)),
    Verb("hit", "hit", "hits", ("frappe", "frappe", "frappons", "frappent"), ("person",), ("ball", "net")),
    Verb("feed", "feed", "feeds", ("nourris", "nourrit", "nourrissons", "nourrissent"), ("person",), ("animal",)),
    Verb("build", "build", "builds", ("construis", "construit", "construisons", "construisent"), ("person",), ("wood",),
         exclude=("plank",)),
    Verb("open", "open", "opens", ("ouvre", "ouvre", "ouvrons", "ouvrent"), ("person",), ("account",)),
    Verb("see/past", "see", "sees", ("ai", "a", "avons", "ont"), ("person", "animal"), ANY_OBJECT + ("person",), True, "vu"),
)

# The company sense of "apple": a proper noun without article, singular, masculine.
COMPANY = Noun("apple/company", "apple", "apple", "apple", "apple", "m", "company", ("technology",))

# Ambiguous English words: word -> {sense: French word that translates it}.
AMBIGUOUS = {
    "apple": {"fruit": "pomme", "company": "apple"},
    "saw": {"see": "vu", "tool": "scie"},
    "bank": {"money": "banque", "river": "rive"},
    "bat": {"animal": "chauve-souris", "sports": "batte"},
    "watch": {"look": "regarde", "time": "montre"},
    "light": {"weight": "léger", "lamp": "lampe"},
}

# The topic whose words decide each sense (probe sentences about that topic; cue words).
# The verbs "saw" (see) and "watch" (look) belong to no topic: their sense shows in the
# grammar (a verb after the subject), not in the words around them.
SENSE_TOPIC = {
    "fruit": "food", "company": "technology", "tool": "woodworking", "money": "finance", "river": "nature",
    "animal": "animals", "sports": "sports", "time": "technology", "weight": "sports", "lamp": "technology",
}


def french_forms(word: str) -> set[str]:
    """Every inflected form of a French word of the lexicon: noun plurals, the four forms of
    an adjective, the persons of a verb, and the agreeing forms of a past participle."""
    forms = {word}
    forms |= {n.fr_pl for n in NOUNS if n.fr == word}
    forms |= {f for a in ADJECTIVES if word in a.fr for f in a.fr}
    forms |= {f for v in VERBS if word in v.fr for f in v.fr}
    for v in VERBS:
        if v.participle == word:  # agreement with a preceding direct object: vu, vue, vus, vues
            forms |= {word + ending for ending in ("e", "s", "es")}
    return forms


# Pronoun subjects: English, French, person index into Verb.fr (0 je, 1 il/elle, 2 nous, 3 ils/elles).
PRONOUNS = (("i", "je", 0), ("he", "il", 1), ("she", "elle", 1), ("we", "nous", 2), ("they", "ils", 3))

VOWELS = set("aeiouyàâäéèêëîïôöûùüœh")  # every French word here starting with h has a mute h


def starts_with_vowel(word: str) -> bool:
    return word[:1].lower() in VOWELS
