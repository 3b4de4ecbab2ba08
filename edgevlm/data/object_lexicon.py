"""The object categories that existence questions, hallucination metrics (CHAIR) and the
concept head share, each a synonym group, chosen from the most frequent concrete nouns of
the Flickr8k training captions (counted per image, ``python -m edgevlm.scripts.object_lexicon
CAPTIONS.json`` prints the counts).

One lexicon for everything, so "is there a dog?", the CHAIR count of a hallucinated
"puppy" and the concept the head predicts all mean the same thing. Torch-free: the runtime
gets the same groups through the engine manifest, never by importing this module.

Rules, per image (five human captions):
- present: at least ``PRESENT_MIN`` captions name a word of the group (most of them);
- absent: no caption names a word of the group nor a word that leaves it open
  (``UNCERTAIN``: "a person skis" may be a man; "a field" may be grass), so a "no" label
  is never a guess;
- anything else is unknown and never asked about.
"""

from __future__ import annotations

import re

PRESENT_MIN = 3  # of 5 captions: "most of the image's captions mention it"

# category -> every word that names it (singular, plural, the usual synonyms).
CATEGORIES: dict[str, tuple[str, ...]] = {
    # people
    "person": ("person", "persons", "people", "man", "men", "woman", "women", "boy", "boys", "girl", "girls", "child",
               "children", "kid", "kids", "baby", "babies", "toddler", "toddlers", "lady", "ladies", "guy", "guys",
               "player", "players", "skier", "skiers", "surfer", "surfers", "biker", "bikers", "cyclist", "cyclists",
               "rider", "riders", "climber", "climbers", "swimmer", "swimmers", "skateboarder", "skateboarders",
               "snowboarder", "snowboarders", "runner", "runners", "hiker", "hikers", "someone", "crowd", "adult",
               "adults", "teenager", "teenagers", "teen", "teens", "performer",
               "performers", "worker", "workers", "athlete", "athletes", "dancer", "dancers", "spectators", "audience",
               "mother", "father", "dad", "mom", "son", "daughter", "brother", "sister", "friends"),
    "man": ("man", "men", "guy", "guys", "gentleman", "male", "father", "dad", "husband", "grandfather"),
    "woman": ("woman", "women", "lady", "ladies", "female", "mother", "mom", "wife", "grandmother"),
    "child": ("child", "children", "kid", "kids", "boy", "boys", "girl", "girls", "baby", "babies", "toddler",
              "toddlers", "infant"),
    "crowd": ("crowd", "crowds", "audience", "spectators"),
    # animals
    "dog": ("dog", "dogs", "puppy", "puppies", "pup", "poodle", "terrier", "retriever", "collie", "labrador",
            "greyhound", "dachshund", "beagle", "husky", "shepherd", "spaniel", "pitbull", "chihuahua", "bulldog"),
    "cat": ("cat", "cats", "kitten", "kittens", "kitty"),
    "horse": ("horse", "horses", "pony", "ponies"),
    "bird": ("bird", "birds", "duck", "ducks", "seagull", "seagulls", "pigeon", "pigeons", "goose", "geese"),
    # vehicles
    "bike": ("bike", "bikes", "bicycle", "bicycles", "cyclist", "cyclists", "biker", "bikers", "bmx"),
    "car": ("car", "cars", "truck", "trucks", "jeep", "van", "suv", "taxi"),
    "motorcycle": ("motorcycle", "motorcycles", "motorbike", "motorbikes", "motorcyclist"),
    "boat": ("boat", "boats", "kayak", "kayaks", "canoe", "canoes", "raft", "rafts", "sailboat"),
    # things people hold, wear and play with
    "ball": ("ball", "balls"),
    "frisbee": ("frisbee", "frisbees"),
    "skateboard": ("skateboard", "skateboards", "skateboarder", "skateboarders", "skateboarding"),
    "surfboard": ("surfboard", "surfboards", "surfer", "surfers", "surfing", "surfs"),
    "stick": ("stick", "sticks", "twig"),
    "toy": ("toy", "toys"),
    "rope": ("rope", "ropes"),
    "hat": ("hat", "hats", "cap", "caps"),
    "helmet": ("helmet", "helmets"),
    "sunglasses": ("sunglasses",),
    "backpack": ("backpack", "backpacks"),
    "umbrella": ("umbrella", "umbrellas"),
    "shirt": ("shirt", "shirts", "tshirt", "t"),  # "t" of "t-shirt": banned with it, never "a t top"
    "jacket": ("jacket", "jackets", "coat", "coats"),
    "dress": ("dress", "dresses", "gown"),
    "shorts": ("shorts",),
    # places and scenery
    "water": ("water", "pool", "pools", "lake", "lakes", "ocean", "river", "rivers", "sea", "pond", "creek", "stream",
              "puddle", "fountain"),
    "grass": ("grass", "grassy", "lawn"),
    "snow": ("snow", "snowy", "snowbank"),
    "sand": ("sand", "sandy"),
    "beach": ("beach", "beaches", "shore", "seashore"),
    "street": ("street", "streets", "road", "roads", "alley", "crosswalk"),
    "sidewalk": ("sidewalk", "sidewalks", "pavement"),
    "mountain": ("mountain", "mountains", "mountainside", "hill", "hills", "hillside"),
    "tree": ("tree", "trees", "woods", "forest", "wooded"),
    "rock": ("rock", "rocks", "rocky", "boulder", "boulders", "cliff", "cliffs", "stone", "stones"),
    "wall": ("wall", "walls"),
    "fence": ("fence", "fences"),
    "bench": ("bench", "benches"),
    "building": ("building", "buildings", "house", "houses", "skyscraper", "skyscrapers"),
    "stairs": ("stairs", "staircase", "stairway"),
    "playground": ("playground", "playgrounds"),
    "flag": ("flag", "flags"),
    "sign": ("sign", "signs", "banner", "banners", "billboard"),
    "chair": ("chair", "chairs", "couch", "sofa"),
    "table": ("table", "tables", "desk"),
    "flowers": ("flower", "flowers"),
}

# Words that leave a category's absence open: no "no" label while one of these is named.
_ANY_PERSON = {"person", "persons", "people", "someone", "player", "players", "crowd", "skier", "skiers", "surfer",
               "surfers", "biker", "bikers", "cyclist", "cyclists", "rider", "riders", "climber", "climbers", "swimmer",
               "swimmers", "team", "group", "family", "couple", "adult", "adults", "skateboarder", "skateboarders",
               "snowboarder", "snowboarders", "runner", "runners", "hiker", "hikers", "performer", "performers",
               "worker", "workers", "athlete", "athletes", "dancer", "dancers", "spectators", "audience", "teenager",
               "teenagers", "teen", "teens", "friends", "individual", "figure", "they", "he", "she", "his", "her",
               "someone", "somebody", "parent", "parents", "student", "students", "crowded", "busy"}
_ANY_ANIMAL = {"animal", "animals", "pet", "pets", "creature"}
UNCERTAIN: dict[str, set[str]] = {
    "person": {"crowded", "busy", "figure", "someone", "somebody", "hand", "hands", "arm", "legs", "feet", "he", "she",
               "his", "her", "they", "pedestrians", "shadow", "statue", "couple", "family", "team", "group"},
    "man": _ANY_PERSON | {"boy", "boys", "male", "son", "brother", "sons", "brothers"},
    "woman": _ANY_PERSON | {"girl", "girls", "female", "daughter", "sister", "daughters", "sisters"},
    "child": _ANY_PERSON | {"young", "little", "small", "son", "daughter", "brother", "sister", "sons", "daughters",
                            "brothers", "sisters", "student", "students"},
    "crowd": {"people", "group", "groups", "many", "several", "team", "teams", "busy", "crowded", "fans", "onlookers",
              "parade", "festival", "market", "concert", "race", "marathon", "stands", "bleachers"},
    "dog": _ANY_ANIMAL, "cat": _ANY_ANIMAL, "horse": _ANY_ANIMAL | {"rodeo", "cowboy", "bull", "riding"},
    "bird": _ANY_ANIMAL,
    "bike": {"motorcycle", "motorcycles", "motorbike", "rider", "riders", "cycling", "dirt", "wheel", "ride", "rides",
             "riding", "race", "racer", "tricycle", "unicycle", "scooter"},
    "car": {"traffic", "vehicle", "vehicles", "bus", "parking", "race", "racing", "road", "street", "highway",
            "driver", "driving", "parked", "wheel"},
    "motorcycle": {"bike", "bikes", "biker", "bikers", "dirt", "rider", "riders", "race", "racing", "motocross",
                   "vehicle", "atv", "moped", "scooter"},
    "boat": {"water", "lake", "river", "ocean", "sea", "dock", "harbor", "paddle", "paddles", "paddling", "rowing",
             "sail", "sailing", "ship", "rafting"},
    "ball": {"soccer", "football", "basketball", "volleyball", "tennis", "baseball", "rugby", "game", "games", "catch",
             "catches", "catching", "kicks", "kicking", "throws", "throwing", "toy", "toys", "fetch", "fetching",
             "hockey", "golf", "lacrosse", "cricket", "sports", "match", "playing", "plays"},
    "frisbee": {"toy", "toys", "disc", "catch", "catches", "catching", "throws", "throwing", "fetch", "object", "game"},
    "skateboard": {"skate", "skating", "skates", "ramp", "board", "boards", "trick", "tricks", "skatepark", "rail"},
    "surfboard": {"board", "boards", "wave", "waves", "ocean", "surf", "boogie", "bodyboard", "paddle", "wakeboard",
                  "wakeboarding", "wakeboarder"},
    "stick": {"toy", "toys", "object", "branch", "branches", "wood", "log", "pole", "bat", "fetch", "fetching",
              "carries", "carrying", "mouth", "holding", "holds", "twigs"},
    "toy": {"ball", "balls", "frisbee", "stick", "object", "something", "doll", "teddy", "stuffed", "plastic", "fetch",
            "mouth", "chew", "chewing", "holding", "holds", "carrying", "carries", "playing", "plays", "rope"},
    "rope": {"leash", "cable", "line", "lines", "tug", "harness", "climbing", "climber", "climbs", "climb", "toy",
             "tow", "swing", "string"},
    "hat": {"helmet", "helmets", "hood", "hooded", "cap", "beanie", "bandana", "headband", "headscarf", "scarf",
            "headdress", "headwear", "costume", "cowboy", "visor", "turban", "wig", "mask"},
    "helmet": {"hat", "hats", "cap", "caps", "gear", "bike", "bikes", "bicycle", "biker", "cyclist", "motorcycle",
               "motorbike", "football", "hockey", "skateboarder", "skateboard", "climber", "rider", "race", "racing",
               "uniform", "padded", "pads", "dirt", "protective"},
    "sunglasses": {"glasses", "goggles", "shades", "eyeglasses", "spectacles", "sunny", "sun"},
    "backpack": {"bag", "bags", "pack", "packs", "hiker", "hikers", "hiking", "purse", "luggage", "gear"},
    "umbrella": {"rain", "raining", "rainy", "parasol", "shade"},
    "shirt": {"top", "tops", "jersey", "jerseys", "uniform", "uniforms", "clothes", "clothing", "dressed", "outfit",
              "outfits", "blouse", "tank", "sweater", "sweatshirt", "hoodie", "jacket", "jackets", "coat", "coats",
              "costume", "suit", "vest", "wearing", "wears", "wear", "shirtless", "sleeve", "sleeves", "sleeved",
              "man", "men", "woman", "women", "boy", "boys", "girl", "girls", "child", "children", "person", "people",
              "kid", "kids", "player", "players", "guy", "lady"},
    "jacket": {"clothes", "clothing", "dressed", "outfit", "outfits", "sweater", "sweatshirt", "hoodie", "hooded",
               "vest", "parka", "winter", "snow", "snowy", "cold", "suit", "uniform", "gear", "wearing", "wears",
               "blazer", "jersey", "top", "shirt", "costume", "skier", "snowboarder"},
    "dress": {"clothes", "clothing", "dressed", "outfit", "outfits", "costume", "costumes", "skirt", "gown", "gowns",
              "wearing", "wears", "woman", "women", "girl", "girls", "lady", "ladies", "bride", "wedding"},
    "shorts": {"clothes", "clothing", "dressed", "outfit", "outfits", "trunks", "swimsuit", "uniform", "uniforms",
               "bathing", "swimming", "shirtless", "wearing", "wears", "pants", "summer", "beach", "player",
               "players", "runner", "runners", "jersey"},
    "water": {"wave", "waves", "surf", "beach", "swimming", "swims", "swim", "splash", "splashes", "splashing", "wet", "shore", "wading",
              "wades", "boat", "kayak", "canoe", "raft", "sprinkler", "hose", "rain", "raining", "surfing", "surfer",
              "surfboard", "ice", "dock", "harbor", "fishing", "fisherman", "bridge", "sea", "waterfall", "spray",
              "sprays", "shower", "bath", "bathtub", "tub", "pier", "coast", "wakeboard", "wakeboarder", "jetski",
              "drinking", "drinks", "bubbles", "mud", "muddy", "bay", "marsh", "swimsuit", "trunks", "snow"},
    "grass": {"field", "fields", "park", "yard", "backyard", "meadow", "garden", "outside", "outdoors", "lawn",
              "ground", "hill", "hills", "hillside", "grassy", "green", "golf", "soccer", "football", "baseball",
              "pasture", "prairie", "plants", "weeds", "hay", "countryside", "rural", "farm", "trees", "woods",
              "forest", "bushes", "brush", "leaves", "court"},
    "snow": {"ski", "skis", "skier", "skiers", "skiing", "sled", "sledding", "sleds", "snowboard", "snowboarder",
             "snowboarding", "winter", "ice", "icy", "snowy", "cold", "white", "frozen", "snowman", "slope",
             "slopes", "mountain", "mountains", "snowmobile", "snowsuit", "igloo", "frost", "powder"},
    "sand": {"beach", "beaches", "shore", "desert", "dirt", "dunes", "dune", "sandbox", "ocean", "sea", "coast",
             "seashore", "mud", "ground", "volleyball", "dust", "dusty", "gravel"},
    "beach": {"sand", "sandy", "ocean", "sea", "shore", "shoreline", "coast", "waves", "wave", "surf", "water",
              "lake", "bay", "seaside", "surfer", "surfers", "surfing", "swimsuit", "bikini", "tide", "pier",
              "boardwalk", "dunes"},
    "street": {"sidewalk", "sidewalks", "city", "town", "urban", "traffic", "car", "cars", "crosswalk", "intersection",
               "downtown", "avenue", "highway", "pavement", "parking", "lot", "curb", "bus", "alley", "track",
               "parade", "market", "building", "buildings", "outside", "outdoors", "driveway", "path", "lane",
               "asphalt", "concrete", "marathon", "race", "pedestrians", "corner", "block", "public", "store", "shop"},
    "sidewalk": {"street", "streets", "road", "city", "town", "urban", "pavement", "path", "walkway", "concrete",
                 "curb", "crosswalk", "outside", "outdoors", "downtown", "plaza", "brick", "store", "shop", "building",
                 "buildings", "pedestrians", "walk", "walks", "walking", "alley", "parking", "lot", "driveway"},
    "mountain": {"mountains", "hill", "hills", "hillside", "slope", "slopes", "cliff", "cliffs", "rock", "rocks",
                 "rocky", "peak", "peaks", "summit", "ridge", "canyon", "valley", "snowy", "ski", "skier", "skiing",
                 "snowboarder", "hiker", "hikers", "hiking", "climber", "climbing", "landscape", "scenic", "view",
                 "overlooking", "top", "background", "distance", "outdoors", "wilderness", "trail", "desert", "dune"},
    "tree": {"trees", "woods", "wooded", "forest", "branch", "branches", "leaves", "park", "yard", "garden", "bush",
             "bushes", "outside", "outdoors", "trail", "jungle", "shade", "log", "logs", "trunk", "palm", "woodland",
             "background", "countryside", "field", "hill", "hills", "path", "stick"},
    "rock": {"rocks", "rocky", "boulder", "cliff", "cliffs", "stone", "stones", "mountain", "mountains", "climbing",
             "climber", "climbs", "climb", "canyon", "ledge", "gravel", "pebbles", "beach", "shore", "wall", "hill",
             "hiker", "hiking", "outcrop", "cave", "formation", "desert", "river", "creek", "stream", "waterfall"},
    "wall": {"building", "buildings", "graffiti", "brick", "bricks", "fence", "mural", "painted", "climbing",
             "climber", "indoor", "inside", "room", "house", "houses", "store", "window", "windows", "door",
             "doorway", "stone", "concrete", "ledge", "behind", "background", "alley", "street", "city", "poster",
             "posters", "sign", "signs", "barrier", "rail", "railing", "side"},
    "fence": {"wall", "walls", "gate", "gates", "railing", "rail", "rails", "barrier", "barriers", "net", "netting",
              "posts", "post", "wire", "chain", "yard", "backyard", "field", "pasture", "farm", "court", "track",
              "course", "obstacle", "jump", "jumps", "jumping", "hurdle", "pen", "enclosure", "cage", "behind"},
    "bench": {"seat", "seats", "seated", "sitting", "sits", "sit", "park", "chair", "chairs", "bleachers", "ledge",
              "wall", "steps", "stairs", "bus", "station", "resting", "rests", "rest", "waiting", "waits", "plaza"},
    "building": {"city", "town", "urban", "downtown", "street", "streets", "store", "stores", "shop", "shops",
                 "restaurant", "church", "wall", "walls", "window", "windows", "door", "doors", "doorway", "porch",
                 "balcony", "roof", "structure", "background", "skyline", "construction", "market", "station",
                 "inside", "indoor", "indoors", "room", "hall", "stadium", "arena", "school", "hotel", "bar", "cafe",
                 "home", "brick", "graffiti", "mural", "temple", "tower", "tent", "barn", "garage", "sidewalk",
                 "alley", "plaza", "storefront", "museum", "castle", "bridge"},
    "stairs": {"steps", "step", "staircase", "stair", "stairway", "porch", "ledge", "railing", "rail", "rails",
               "handrail", "escalator", "stoop", "bleachers", "platform", "ladder", "climbing", "climbs", "climb",
               "concrete", "stone", "building", "landing", "walkway", "curb", "sitting", "sits"},
    "playground": {"slide", "slides", "swing", "swings", "swinging", "jungle", "monkey", "bars", "sandbox", "park",
                   "equipment", "climbing", "climbs", "structure", "trampoline", "seesaw", "carousel", "merry",
                   "playhouse", "playset", "fort", "tunnel", "tube", "yard", "backyard", "school", "kids", "children",
                   "child", "playing", "plays", "play", "toddler"},
    "flag": {"flags", "banner", "banners", "parade", "pole", "patriotic", "american", "country", "sign", "signs",
             "cape", "fabric", "cloth", "sheet", "rally", "protest", "festival", "celebration", "holding", "waving",
             "waves"},
    "sign": {"signs", "banner", "banners", "billboard", "poster", "posters", "board", "placard", "writing",
             "written", "words", "letters", "text", "advertisement", "ad", "ads", "store", "shop", "storefront",
             "street", "city", "graffiti", "mural", "flag", "flags", "protest", "rally", "menu", "logo", "number",
             "numbers", "scoreboard", "marquee"},
    "chair": {"chairs", "seat", "seats", "seated", "sitting", "sits", "sit", "bench", "benches", "couch", "sofa",
              "stool", "stools", "wheelchair", "table", "tables", "desk", "restaurant", "cafe", "room", "inside",
              "indoor", "indoors", "living", "porch", "patio", "furniture", "lounge", "armchair", "recliner", "bed",
              "high", "highchair", "booth", "bleachers"},
    "table": {"tables", "desk", "desks", "counter", "bar", "restaurant", "cafe", "dinner", "dining", "eating",
              "eats", "eat", "food", "meal", "picnic", "kitchen", "room", "inside", "indoor", "indoors", "chair",
              "chairs", "sitting", "sits", "booth", "plate", "plates", "drink", "drinks", "cup", "cups", "game",
              "games", "cards", "board", "stand", "market", "stall", "vendor", "workbench"},
    "flowers": {"flower", "plants", "plant", "garden", "gardens", "bush", "bushes", "bouquet", "blossoms", "blooming",
                "petals", "field", "meadow", "pot", "pots", "vase", "wreath", "leaves", "colorful", "spring",
                "daisies", "roses", "tulips", "sunflowers", "weeds", "vines", "greenery"},
}
# People-words name a person for sure, so they are absent-blockers only of the sub-kinds.
MASS_NOUNS = frozenset({"water", "grass", "snow", "sand"})
# Categories whose name is already plural ("are there any stairs?").
PLURAL_ONLY = frozenset({"sunglasses", "shorts", "stairs", "flowers"})
PLURALS = {"person": "people", "man": "men", "woman": "women", "child": "children", "bench": "benches",
           "dress": "dresses", "beach": "beaches", "crowd": "crowds", "sand": "sand", "water": "water",
           "grass": "grass", "snow": "snow"}


def words(text: str) -> list[str]:
    """Lower-case word tokens ("T-shirt" -> ["t", "shirt"])."""
    return re.findall(r"[a-z]+", text.lower())


def mentioned(text: str, categories: dict[str, tuple[str, ...]] | None = None) -> set[str]:
    """The categories a caption (or answer) names: "two puppies on a lawn" -> {"dog", "grass"}
    (``categories``: another lexicon's, name -> words; default this one's)."""
    found = set(words(text))
    return {name for name, group in (categories or CATEGORIES).items() if found.intersection(group)}


def uncertain(text: str) -> set[str]:
    """The categories a caption leaves open without naming them."""
    found = set(words(text))
    return {name for name, blockers in UNCERTAIN.items() if found & blockers}


def image_labels(captions: list[str], present_min: int = PRESENT_MIN,
                 categories: dict[str, tuple[str, ...]] | None = None) -> dict[str, bool]:
    """category -> True (present: named by at least ``present_min`` captions) or False (absent:
    named by none, and none leaves it open); categories in between are left out.
    ``categories``: another lexicon (name -> words; edgevlm/data/unknown_objects.py), whose
    names no UNCERTAIN word leaves open unless they are this lexicon's too."""
    if not captions:
        return {}
    counts = {name: 0 for name in (categories or CATEGORIES)}
    open_ = set()
    for caption in captions:
        for name in mentioned(caption, categories):
            counts[name] += 1
        open_ |= uncertain(caption)
    labels = {}
    for name, count in counts.items():
        if count >= min(present_min, len(captions)):
            labels[name] = True
        elif count == 0 and name not in open_:
            labels[name] = False
    return labels


def noun_forms(category: str) -> tuple[str, str, str]:
    """-> (article with its space, singular, plural): ("a ", "dog", "dogs"); ("", "water",
    "water"); ("", "stairs", "stairs") for plural-only names."""
    if category in MASS_NOUNS:
        return "", category, category
    if category in PLURAL_ONLY:
        return "", category, category
    article = "an " if category[0] in "aeiou" else "a "
    return article, category, PLURALS.get(category, category + "s")
