"""Vocabulary of the synthetic demo data set (`qckit.demo`): taxonomy, native query words, title words.

Everything here is plain data so a reader can check or extend one language without reading the
generator. Queries are built from a leaf's *head* phrases (written natively per language, never by
translating an English template) plus modifier words placed by per-language word-order templates.
Item titles are English, as most AliExpress titles are whatever the shopper's language.

Notation used in the string tables:

- ``"a|b"``: alternatives; the generator picks one at random.
- ``"noir/noire/noirs/noires"``: forms by grammatical gender, in the order ``GENDERS[lang]``; a word
  without ``/`` does not inflect.
- a head ``"robe d'été:f"``: the head phrase and the gender its modifiers agree with (only the
  languages in ``GENDERS`` carry one).

Example:
    >>> from qckit.demo_vocab import LEAVES, TEMPLATES
    >>> ",".join(LEAVES[0]["path"])
    "women's clothing,dresses & skirts,casual dresses"
    >>> TEMPLATES["fr"][0]
    '{head} {brand} {material} {colour} {aud} {size} {price}'
"""
from __future__ import annotations

LANGUAGES = ("en", "fr", "es", "ko", "pt", "ja", "de", "it", "pl", "ar")

# Gender slots of the inflected forms. Romance plurals are separate slots because plural heads
# ("écouteurs", "jeans") are common product nouns; Arabic non-human plurals agree as feminine singular.
GENDERS: dict[str, tuple[str, ...]] = {
    "fr": ("m", "f", "mp", "fp"),
    "es": ("m", "f", "mp", "fp"),
    "pt": ("m", "f", "mp", "fp"),
    "it": ("m", "f", "mp", "fp"),
    "de": ("m", "f", "n", "pl"),
    "pl": ("m", "f", "n", "pl"),
    "ar": ("m", "f"),
}

# Word-order templates. Every template holds every slot once (one of {aud} / {aud_for}); empty slots
# vanish. {colour_adj} is German's inflected attributive colour ("schwarze Geldbörse"), {colour} the
# form that fits the language's usual spot (postposed bare "Geldbörse schwarz" in German).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": (
        "{price} {aud} {colour} {material} {brand} {head} {size}",
        "{brand} {head} {colour} {material} {size} {aud_for} {price}",
        "{aud} {brand} {material} {head} {colour} {size} {price}",
    ),
    "fr": (
        "{head} {brand} {material} {colour} {aud} {size} {price}",
        "{head} {brand} {colour} {aud_for} {material} {size} {price}",
    ),
    "es": (
        "{head} {brand} {material} {colour} {aud_for} {size} {price}",
        "{head} {aud} {brand} {colour} {material} {size} {price}",
    ),
    "pt": (
        "{head} {aud} {brand} {material} {colour} {size} {price}",
        "{head} {brand} {colour} {material} {aud_for} {size} {price}",
    ),
    "it": (
        "{head} {aud} {brand} {material} {colour} {size} {price}",
        "{head} {brand} {colour} {material} {aud_for} {size} {price}",
    ),
    "de": (
        "{aud} {head} {brand} {material} {colour} {size} {price}",
        "{colour_adj} {head} {brand} {material} {size} {aud_for} {price}",
        "{brand} {head} {colour} {material} {aud} {size} {price}",
    ),
    "pl": (
        "{head} {aud} {brand} {material} {colour} {size} {price}",
        "{colour} {head} {brand} {aud} {material} {size} {price}",
        "{head} {brand} {material} {colour} {aud_for} {size} {price}",
    ),
    "ar": (
        "{head} {brand} {material} {aud} {colour} {size} {price}",
        "{head} {brand} {colour} {material} {aud_for} {size} {price}",
    ),
    "ko": (
        "{price} {aud} {colour} {material} {brand} {head} {size}",
        "{price} {brand} {aud_for} {material} {head} {colour} {size}",
    ),
    "ja": (
        "{brand} {head} {aud} {material} {colour} {size} {price}",
        "{price} {brand} {aud} {material} {head} {colour} {size}",
    ),
}

COLOURS = ("black", "white", "red", "blue", "pink", "green")

COLOUR_WORDS: dict[str, dict[str, str]] = {
    "en": {"black": "black", "white": "white", "red": "red", "blue": "blue", "pink": "pink",
           "green": "green"},
    "fr": {
        "black": "noir/noire/noirs/noires", "white": "blanc/blanche/blancs/blanches",
        "red": "rouge/rouge/rouges/rouges", "blue": "bleu/bleue/bleus/bleues",
        "pink": "rose/rose/roses/roses", "green": "vert/verte/verts/vertes",
    },
    "es": {
        "black": "negro/negra/negros/negras", "white": "blanco/blanca/blancos/blancas",
        "red": "rojo/roja/rojos/rojas", "blue": "azul/azul/azules/azules",
        "pink": "rosa", "green": "verde/verde/verdes/verdes",
    },
    "pt": {
        "black": "preto/preta/pretos/pretas", "white": "branco/branca/brancos/brancas",
        "red": "vermelho/vermelha/vermelhos/vermelhas", "blue": "azul/azul/azuis/azuis",
        "pink": "rosa", "green": "verde/verde/verdes/verdes",
    },
    "it": {
        "black": "nero/nera/neri/nere", "white": "bianco/bianca/bianchi/bianche",
        "red": "rosso/rossa/rossi/rosse", "blue": "blu", "pink": "rosa", "green": "verde/verde/verdi/verdi",
    },
    # German bare (predicative) forms; the attributive ending is added by the generator.
    "de": {"black": "schwarz", "white": "weiß", "red": "rot", "blue": "blau", "pink": "rosa",
           "green": "grün"},
    "pl": {
        "black": "czarny/czarna/czarne/czarne", "white": "biały/biała/białe/białe",
        "red": "czerwony/czerwona/czerwone/czerwone", "blue": "niebieski/niebieska/niebieskie/niebieskie",
        "pink": "różowy/różowa/różowe/różowe", "green": "zielony/zielona/zielone/zielone",
    },
    "ar": {
        "black": "أسود/سوداء", "white": "أبيض/بيضاء", "red": "أحمر/حمراء",
        "blue": "أزرق/زرقاء", "pink": "وردي/وردية", "green": "أخضر/خضراء",
    },
    # Korean shoppers mostly type loanword colours; the native nouns work before and after the head.
    "ko": {"black": "블랙|검정", "white": "화이트|흰색", "red": "레드|빨강", "blue": "블루|파랑",
           "pink": "핑크", "green": "그린|초록"},
    "ja": {"black": "黒|ブラック", "white": "白|ホワイト", "red": "赤|レッド", "blue": "青|ブルー",
           "pink": "ピンク", "green": "緑|グリーン"},
}

MATERIAL_WORDS: dict[str, dict[str, str]] = {
    "en": {"leather": "leather|genuine leather", "cotton": "cotton", "linen": "linen", "silicone": "silicone",
           "ceramic": "ceramic", "glass": "glass", "steel": "stainless steel|steel", "wood": "wooden|wood",
           "wool": "wool"},
    "fr": {"leather": "cuir|en cuir", "cotton": "coton|en coton", "linen": "lin|en lin",
           "silicone": "silicone|en silicone", "ceramic": "céramique|en céramique", "glass": "verre|en verre",
           "steel": "inox|en inox", "wood": "bois|en bois", "wool": "laine|en laine"},
    "es": {"leather": "de cuero|de piel|cuero", "cotton": "de algodón|algodón", "linen": "de lino|lino",
           "silicone": "de silicona|silicona", "ceramic": "de cerámica|cerámica", "glass": "de vidrio|vidrio",
           "steel": "de acero inoxidable|acero inoxidable", "wood": "de madera|madera",
           "wool": "de lana|lana"},
    "pt": {"leather": "de couro|couro", "cotton": "de algodão|algodão", "linen": "de linho|linho",
           "silicone": "de silicone|silicone", "ceramic": "de cerâmica|cerâmica", "glass": "de vidro|vidro",
           "steel": "de aço inox|inox", "wood": "de madeira|madeira", "wool": "de lã|lã"},
    "it": {"leather": "in pelle|pelle", "cotton": "in cotone|cotone", "linen": "di lino|lino",
           "silicone": "in silicone|silicone", "ceramic": "in ceramica|ceramica", "glass": "in vetro|vetro",
           "steel": "in acciaio inox|acciaio", "wood": "in legno|legno", "wool": "di lana|lana"},
    "de": {"leather": "Leder|aus Leder", "cotton": "Baumwolle|aus Baumwolle", "linen": "Leinen",
           "silicone": "Silikon", "ceramic": "Keramik", "glass": "Glas", "steel": "Edelstahl",
           "wood": "Holz|aus Holz", "wool": "Wolle|aus Wolle"},
    "pl": {"leather": "skórzany/skórzana/skórzane/skórzane",
           "cotton": "bawełniany/bawełniana/bawełniane/bawełniane", "linen": "lniany/lniana/lniane/lniane",
           "silicone": "silikonowy/silikonowa/silikonowe/silikonowe",
           "ceramic": "ceramiczny/ceramiczna/ceramiczne/ceramiczne",
           "glass": "szklany/szklana/szklane/szklane",
           "steel": "stalowy/stalowa/stalowe/stalowe", "wood": "drewniany/drewniana/drewniane/drewniane",
           "wool": "wełniany/wełniana/wełniane/wełniane"},
    "ar": {"leather": "جلد|جلد طبيعي", "cotton": "قطن", "linen": "كتان", "silicone": "سيليكون",
           "ceramic": "سيراميك", "glass": "زجاج", "steel": "ستانلس ستيل|ستانلس", "wood": "خشب",
           "wool": "صوف"},
    "ko": {"leather": "가죽|소가죽", "cotton": "면|코튼", "linen": "린넨", "silicone": "실리콘",
           "ceramic": "도자기|세라믹", "glass": "유리", "steel": "스텐|스테인리스", "wood": "원목|나무",
           "wool": "울|양모"},
    # Japanese may join a material to the head with の ("本革の財布"); the generator adds it.
    "ja": {"leather": "本革|レザー|革", "cotton": "綿|コットン", "linen": "リネン", "silicone": "シリコン",
           "ceramic": "陶器|セラミック", "glass": "ガラス", "steel": "ステンレス", "wood": "木製|天然木",
           "wool": "ウール"},
}

# German builds material compounds ("Ledergeldbörse", "Baumwoll-T-Shirt"); the first part differs from
# the bare noun for a few materials.
GERMAN_MATERIAL_PREFIX = {"cotton": "Baumwoll", "wool": "Woll", "leather": "Leder", "linen": "Leinen",
                          "silicone": "Silikon", "ceramic": "Keramik", "glass": "Glas", "steel": "Edelstahl",
                          "wood": "Holz"}

AUDIENCES = ("women", "men")

AUDIENCE_WORDS: dict[str, dict[str, str]] = {
    "en": {"women": "women's|womens|ladies", "men": "men's|mens"},
    "fr": {"women": "femme", "men": "homme"},
    "es": {"women": "mujer|dama", "men": "hombre|caballero"},
    "pt": {"women": "feminino/feminina/femininos/femininas",
           "men": "masculino/masculina/masculinos/masculinas"},
    "it": {"women": "donna", "men": "uomo"},
    "de": {"women": "Damen", "men": "Herren"},
    "pl": {"women": "damski/damska/damskie/damskie", "men": "męski/męska/męskie/męskie"},
    "ar": {"women": "نسائي/نسائية", "men": "رجالي/رجالية"},
    "ko": {"women": "여성|여자", "men": "남성|남자"},
    "ja": {"women": "レディース", "men": "メンズ"},
}

AUDIENCE_FOR_WORDS: dict[str, dict[str, str]] = {
    "en": {"women": "for women|women", "men": "for men|men"},
    "fr": {"women": "pour femme", "men": "pour homme"},
    "es": {"women": "para mujer|de mujer", "men": "para hombre|de hombre"},
    "pt": {"women": "para mulher|feminino/feminina/femininos/femininas", "men": "para homem"},
    "it": {"women": "da donna|per donna", "men": "da uomo|per uomo"},
    "de": {"women": "für Damen|für Frauen", "men": "für Herren|für Männer"},
    "pl": {"women": "dla kobiet|damski/damska/damskie/damskie", "men": "dla mężczyzn|dla faceta"},
    "ar": {"women": "للنساء|للسيدات", "men": "للرجال"},
    "ko": {"women": "여성용|여자용", "men": "남성용|남자용"},
    "ja": {"women": "女性用|レディース", "men": "男性用|メンズ"},
}

PRICE_WORDS: dict[str, str] = {
    "en": "cheap|best price",
    "fr": "pas cher/pas chère/pas chers/pas chères|promo",
    "es": "barato/barata/baratos/baratas|oferta",
    "pt": "barato/barata/baratos/baratas|promoção",
    "it": "economico/economica/economici/economiche|offerta",
    "de": "günstig|billig",
    "pl": "tani/tania/tanie/tanie|promocja",
    "ar": "رخيص/رخيصة|عرض",
    "ko": "저렴한|싼|가성비",
    "ja": "安い|激安",
}


def _inch(n: int) -> dict[str, str]:
    return {"title": f"{n} Inch", "en": f"{n} inch|{n}in", "fr": f"{n} pouces", "es": f"{n} pulgadas",
            "pt": f"{n} polegadas", "it": f"{n} pollici", "de": f"{n} Zoll", "pl": f"{n} cali",
            "ar": f"{n} بوصة|{n} انش", "ko": f"{n}인치", "ja": f"{n}インチ"}


def _unit(title: str, typed: str) -> dict[str, str]:
    # Units written the same way in every language (watts, millimetres, metres).
    return {"title": title, "*": typed}


SIZE_WORDS: dict[str, dict[str, str]] = {
    "plus": {"title": "Plus Size", "en": "plus size", "fr": "grande taille",
             "es": "talla grande|tallas grandes",
             "pt": "plus size|tamanho grande", "it": "taglie forti|taglia grande", "de": "große Größen",
             "pl": "duże rozmiary|plus size", "ar": "مقاس كبير|مقاسات كبيرة", "ko": "빅사이즈",
             "ja": "大きいサイズ"},
    "20in": _inch(20), "24in": _inch(24), "28in": _inch(28), "6in": _inch(6), "8in": _inch(8),
    "30x20cm": _unit("30x20cm", "30x20|30x20cm"), "40x30cm": _unit("40x30cm", "40x30|40x30cm"),
    "60x90cm": _unit("60x90cm", "60x90|60x90cm"), "90x150cm": _unit("90x150cm", "90x150|90x150cm"),
    "20w": _unit("20W", "20w|20W"), "65w": _unit("65W", "65w|65W"),
    "1m": _unit("1M", "1m"), "2m": _unit("2M", "2m"),
    "350ml": _unit("350ml", "350ml"), "500ml": _unit("500ml", "500ml"),
    "6mm": _unit("6mm", "6mm"), "10mm": _unit("10mm", "10mm"),
    "2p": {"title": "2 Person", "en": "2 person|2 man", "fr": "2 personnes|2 places", "es": "2 personas",
           "pt": "2 pessoas|para 2 pessoas", "it": "2 posti|2 persone", "de": "2 Personen|für 2 Personen",
           "pl": "2-osobowy|dla 2 osób", "ar": "لشخصين|شخصين", "ko": "2인용", "ja": "2人用"},
    "4p": {"title": "4 Person", "en": "4 person|4 man", "fr": "4 personnes|4 places", "es": "4 personas",
           "pt": "4 pessoas|para 4 pessoas", "it": "4 posti|4 persone", "de": "4 Personen|für 4 Personen",
           "pl": "4-osobowy|dla 4 osób", "ar": "4 أشخاص|لأربعة أشخاص", "ko": "4인용", "ja": "4人用"},
}

# Phone models and brands stay Latin in most languages; Korean, Japanese and Arabic shoppers also
# type them in their own script.
BRAND_WORDS: dict[str, dict[str, str]] = {
    "iphone15": {"title": "iPhone 15", "*": "iphone 15|iphone15|iPhone 15",
                 "ko": "아이폰15|아이폰 15|iphone 15", "ja": "iphone15|iPhone15|アイフォン15",
                 "ar": "ايفون 15|iphone 15"},
    "iphone14": {"title": "iPhone 14", "*": "iphone 14|iphone14|iPhone 14",
                 "ko": "아이폰14|아이폰 14|iphone 14", "ja": "iphone14|iPhone14|アイフォン14",
                 "ar": "ايفون 14|iphone 14"},
    "galaxys23": {"title": "Samsung Galaxy S23", "*": "samsung s23|galaxy s23|samsung galaxy s23",
                  "ko": "갤럭시 s23|갤럭시s23", "ja": "galaxy s23|ギャラクシーs23", "ar": "سامسونج s23|galaxy s23"},
    "redminote12": {"title": "Xiaomi Redmi Note 12", "*": "redmi note 12|xiaomi redmi note 12",
                    "ko": "홍미노트12|redmi note 12", "ja": "redmi note 12", "ar": "ريدمي نوت 12|redmi note 12"},
    "xiaomi": {"title": "Xiaomi", "*": "xiaomi", "ko": "샤오미|xiaomi", "ja": "xiaomi|シャオミ",
               "ar": "شاومي|xiaomi"},
    "huawei": {"title": "HUAWEI", "*": "huawei", "ko": "화웨이|huawei", "ja": "huawei|ファーウェイ",
               "ar": "هواوي|huawei"},
    "baseus": {"title": "Baseus", "*": "baseus", "ko": "베이스어스|baseus"},
    "ugreen": {"title": "UGREEN", "*": "ugreen", "ko": "유그린|ugreen"},
    "lenovo": {"title": "Lenovo", "*": "lenovo", "ko": "레노버|lenovo", "ja": "lenovo|レノボ",
               "ar": "لينوفو|lenovo"},
    "redragon": {"title": "Redragon", "*": "redragon"},
}
PHONE_MODELS = ("iphone15", "iphone14", "galaxys23", "redminote12")

# Title words (English, as marketplaces write them).
TITLE_COLOURS = {"black": "Black", "white": "White", "red": "Red", "blue": "Blue", "pink": "Pink",
                 "green": "Green"}
TITLE_MATERIALS = {"leather": "Genuine Leather|Leather", "cotton": "Cotton|100% Cotton", "linen": "Linen",
                   "silicone": "Silicone|Liquid Silicone", "ceramic": "Ceramic|Porcelain",
                   "glass": "Glass|Borosilicate Glass", "steel": "Stainless Steel|304 Stainless Steel",
                   "wood": "Wooden|Bamboo", "wool": "Wool|Merino Wool"}
TITLE_AUDIENCE = {"women": "Women's|Women|Ladies", "men": "Men's|Mens|Men"}
TITLE_PREFIXES = ("", "", "", "2024 New", "2025 New", "New", "Hot Sale", "Original", "Fashion")
# Invented shop brands: keyword-stuffed titles often open with one.
STORE_BRANDS = ("VOLARI", "KUMIVA", "ZENTRO", "MOXELA", "LIVORA", "TEKAVO", "BRIXEN", "NOVAKU")

# Head phrases shared by the women's and men's t-shirt leaves: only the audience tells them apart,
# which is exactly the hard case the QC task has.
_TSHIRT_HEADS = {
    "en": ("t-shirt", "tee", "t shirt"),
    "fr": ("t-shirt:m", "tee-shirt:m", "t-shirt manches courtes:m"),
    "es": ("camiseta:f", "camiseta manga corta:f", "playera:f"),
    "pt": ("camiseta:f", "camiseta básica:f", "t-shirt:f"),
    "it": ("maglietta:f", "t-shirt:f", "maglietta a maniche corte:f"),
    "de": ("T-Shirt:n", "Shirt:n", "Kurzarmshirt:n"),
    "pl": ("koszulka:f", "t-shirt:m", "koszulka z krótkim rękawem:f"),
    "ar": ("تيشرت:m", "تي شيرت:m", "تيشيرت نص كم:m"),
    "ko": ("티셔츠", "반팔티", "반팔 티셔츠"),
    "ja": ("Tシャツ", "半袖Tシャツ", "tシャツ"),
}
_TSHIRT_TITLE = {
    "nouns": ("T-Shirt", "Tee", "T Shirt", "Graphic Tee"),
    "features": ("Oversized", "Short Sleeve", "O-Neck", "Casual", "Harajuku Print", "Basic", "Streetwear",
                 "Summer Top"),
    "specs": ("S-XXL", "S-3XL", "Asian Size"),
}

# Level tuples reused by several leaves.
_KITCHEN = ("home & garden", "kitchen,dining & bar")
_PARTY = ("home & garden", "festive & party supplies", "flags, banners & accessories")
_CRAFTS = ("home & garden", "arts,crafts & sewing", "yarn & knitting")
_PHONE_ACC = ("phones & telecommunications", "mobile phone accessories")
_AUDIO = ("consumer electronics", "portable audio & video", "headphones & earbuds")
_WEARABLE = ("consumer electronics", "smart electronics", "wearable technology")
_CAMPING = ("sports & entertainment", "camping & hiking", "camping gear")
_YOGA = ("sports & entertainment", "fitness & body building", "yoga & pilates")


def _leaf(path: tuple[str, ...], heads: dict, title: dict, *, attrs: dict | None = None,
          audience: str | None = None, audience_optional: bool = False, brand_style: str = "prefix",
          brand_prob: float = 0.4) -> dict:
    """One leaf category.

    ``attrs`` maps an attribute (colour, material, size, brand, audience) to the values a query may ask
    for; ``audience`` is the fixed audience of a gendered clothing leaf (always in its queries unless
    ``audience_optional``); ``brand_style`` is where a brand goes in titles ("prefix" or "for",
    as in "Case for iPhone 15"); ``brand_prob`` is how often a query names one.
    """
    return {"path": path, "heads": heads, "title": title, "attrs": attrs or {}, "audience": audience,
            "audience_optional": audience_optional, "brand_style": brand_style, "brand_prob": brand_prob}


LEAVES: tuple[dict, ...] = (
    # ---- women's clothing ----
    _leaf(("women's clothing", "dresses & skirts", "casual dresses"), {
        "en": ("summer dress", "casual dress", "floral midi dress", "sundress"),
        "fr": ("robe d'été:f", "robe fleurie:f", "robe de plage:f"),
        "es": ("vestido de verano:m", "vestido casual:m", "vestido de flores:m"),
        "pt": ("vestido de verão:m", "vestido casual:m", "vestido florido:m"),
        "it": ("vestito estivo:m", "abito casual:m", "vestito a fiori:m"),
        "de": ("Sommerkleid:n", "Freizeitkleid:n", "Strandkleid:n"),
        "pl": ("sukienka letnia:f", "sukienka na lato:f", "zwiewna sukienka:f"),
        "ar": ("فستان صيفي:m", "فستان كاجوال:m", "فستان مشجر:m"),
        "ko": ("여름 원피스", "롱원피스", "꽃무늬 원피스"),
        "ja": ("ワンピース 夏", "花柄ワンピース", "カジュアルワンピース"),
    }, {
        "nouns": ("Summer Dress", "Casual Dress", "Floral Midi Dress", "Beach Sundress", "A-Line Dress"),
        "features": ("V-Neck", "Short Sleeve", "Loose", "Boho Style", "Ruffle Hem", "High Waist",
                     "Vintage Print"),
        "specs": ("S-XXL", "S-3XL"),
    }, attrs={"colour": COLOURS, "material": ("cotton", "linen"), "size": ("plus",)},
        audience="women", audience_optional=True),
    _leaf(("women's clothing", "dresses & skirts", "evening dresses"), {
        "en": ("evening dress", "evening gown", "prom dress"),
        "fr": ("robe de soirée:f", "robe de gala:f", "robe de cocktail:f"),
        "es": ("vestido de fiesta:m", "vestido de noche:m", "vestido de gala:m"),
        "pt": ("vestido de festa:m", "vestido longo de festa:m", "vestido de gala:m"),
        "it": ("abito da sera:m", "vestito da cerimonia:m", "abito lungo da sera:m"),
        "de": ("Abendkleid:n", "Ballkleid:n", "Cocktailkleid:n"),
        "pl": ("suknia wieczorowa:f", "sukienka na wesele:f", "sukienka balowa:f"),
        "ar": ("فستان سهرة:m", "فستان حفلات:m", "فستان سواريه:m"),
        "ko": ("이브닝드레스", "파티 드레스", "하객 원피스"),
        "ja": ("パーティードレス", "イブニングドレス", "結婚式 ドレス"),
    }, {
        "nouns": ("Evening Dress", "Evening Gown", "Prom Dress", "Cocktail Dress", "Formal Gown"),
        "features": ("Sequin", "Elegant", "Long", "Off Shoulder", "Wedding Guest", "Mermaid", "Side Slit"),
        "specs": ("S-XXL", "Custom Size"),
    }, attrs={"colour": COLOURS, "size": ("plus",)}, audience="women", audience_optional=True),
    _leaf(("women's clothing", "tops", "t-shirts"), _TSHIRT_HEADS, _TSHIRT_TITLE,
          attrs={"colour": COLOURS, "material": ("cotton",), "size": ("plus",)}, audience="women"),
    _leaf(("women's clothing", "tops", "blouses & shirts"), {
        "en": ("blouse", "button up shirt", "long sleeve blouse"),
        "fr": ("chemisier:m", "blouse:f", "chemise:f"),
        "es": ("blusa:f", "camisa:f", "blusa elegante:f"),
        "pt": ("blusa:f", "camisa social:f", "blusa de manga longa:f"),
        "it": ("camicia:f", "camicetta:f", "blusa:f"),
        "de": ("Bluse:f", "Hemdbluse:f", "Langarmbluse:f"),
        "pl": ("bluzka:f", "koszula:f", "bluzka elegancka:f"),
        "ar": ("بلوزة:f", "قميص:m", "بلوزة بأكمام طويلة:f"),
        "ko": ("블라우스", "셔츠", "긴팔 블라우스"),
        "ja": ("ブラウス", "シャツ", "長袖ブラウス"),
    }, {
        "nouns": ("Blouse", "Shirt", "Button Up Shirt", "Tunic Blouse"),
        "features": ("Long Sleeve", "Office Lady", "Elegant", "Turn-Down Collar", "Loose", "Lantern Sleeve"),
        "specs": ("S-XXL", "S-4XL"),
    }, attrs={"colour": COLOURS, "material": ("cotton", "linen"), "size": ("plus",)}, audience="women"),
    # ---- men's clothing ----
    _leaf(("men's clothing", "tops", "t-shirts"), _TSHIRT_HEADS, _TSHIRT_TITLE,
          attrs={"colour": COLOURS, "material": ("cotton",), "size": ("plus",)}, audience="men"),
    _leaf(("men's clothing", "tops", "polo shirts"), {
        "en": ("polo shirt", "polo", "golf polo"),
        "fr": ("polo:m", "polo manches courtes:m"),
        "es": ("polo:m", "playera polo:f", "camisa polo:f"),
        "pt": ("camisa polo:f", "polo:f"),
        "it": ("polo:f", "maglia polo:f"),
        "de": ("Poloshirt:n", "Polohemd:n"),
        "pl": ("polo:n", "koszulka polo:f"),
        "ar": ("بولو:m", "قميص بولو:m", "تيشرت بولو:m"),
        "ko": ("폴로 셔츠", "카라티", "피케셔츠"),
        "ja": ("ポロシャツ", "ゴルフ ポロシャツ"),
    }, {
        "nouns": ("Polo Shirt", "Polo", "Golf Polo Shirt"),
        "features": ("Short Sleeve", "Business Casual", "Slim Fit", "Breathable", "Embroidered", "Lapel"),
        "specs": ("M-4XL", "S-XXL"),
    }, attrs={"colour": COLOURS, "material": ("cotton",), "size": ("plus",)}, audience="men"),
    _leaf(("men's clothing", "bottoms", "jeans"), {
        "en": ("jeans", "slim fit jeans", "denim pants"),
        "fr": ("jean:m", "jean slim:m", "pantalon en jean:m"),
        "es": ("vaqueros:mp", "jeans:mp", "pantalón vaquero:m"),
        "pt": ("calça jeans:f", "calça jeans skinny:f"),
        "it": ("jeans:mp", "jeans slim:mp"),
        "de": ("Jeans:f", "Jeanshose:f", "Slim Fit Jeans:f"),
        "pl": ("jeansy:pl", "spodnie jeansowe:pl", "dżinsy:pl"),
        "ar": ("بنطلون جينز:m", "جينز:m"),
        "ko": ("청바지", "데님 팬츠", "슬림 청바지"),
        "ja": ("ジーンズ", "デニムパンツ", "スリムジーンズ"),
    }, {
        "nouns": ("Jeans", "Denim Pants", "Slim Jeans", "Straight Jeans"),
        "features": ("Stretch", "Skinny", "Classic", "Ripped", "Streetwear", "Washed"),
        "specs": ("Size 28-40", "29-42"),
    }, attrs={"colour": ("black", "blue"), "size": ("plus",)}, audience="men"),
    _leaf(("men's clothing", "bottoms", "shorts"), {
        "en": ("shorts", "cargo shorts", "board shorts"),
        "fr": ("short:m", "bermuda:m", "short cargo:m"),
        "es": ("pantalones cortos:mp", "bermudas:fp", "short:m"),
        "pt": ("bermuda:f", "short:m", "bermuda cargo:f"),
        "it": ("pantaloncini:mp", "bermuda:mp", "pantaloncini corti:mp"),
        "de": ("Shorts:pl", "Bermudashorts:pl", "Cargoshorts:pl"),
        "pl": ("spodenki:pl", "szorty:pl", "krótkie spodenki:pl"),
        "ar": ("شورت:m", "برمودا:m", "شورت قصير:m"),
        "ko": ("반바지", "카고 반바지", "숏팬츠"),
        "ja": ("ハーフパンツ", "ショートパンツ", "短パン"),
    }, {
        "nouns": ("Shorts", "Cargo Shorts", "Board Shorts", "Casual Shorts"),
        "features": ("Summer", "Knee Length", "Drawstring", "Multi Pocket", "Quick Dry", "Beach"),
        "specs": ("M-5XL", "S-XXL"),
    }, attrs={"colour": COLOURS, "material": ("cotton", "linen")}, audience="men"),
    # ---- luggage & bags ----
    _leaf(("luggage & bags", "luggage & travel bags", "suitcases"), {
        "en": ("suitcase", "carry on luggage", "hard shell suitcase"),
        "fr": ("valise:f", "valise cabine:f", "valise rigide:f"),
        "es": ("maleta:f", "maleta de viaje:f", "maleta de cabina:f"),
        "pt": ("mala de viagem:f", "mala de bordo:f", "mala com rodinhas:f"),
        "it": ("valigia:f", "trolley:m", "valigia rigida:f"),
        "de": ("Koffer:m", "Trolley:m", "Hartschalenkoffer:m"),
        "pl": ("walizka:f", "walizka kabinowa:f", "walizka na kółkach:f"),
        "ar": ("شنطة ترولي:f", "حقيبة سفر بعجلات:f", "حقيبة سفر صلبة:f"),
        "ko": ("캐리어", "여행가방", "기내용 캐리어"),
        "ja": ("スーツケース", "キャリーケース", "機内持ち込み スーツケース"),
    }, {
        "nouns": ("Suitcase", "Rolling Luggage", "Carry-On Luggage", "Trolley Case"),
        "features": ("Hardside", "Spinner Wheels", "TSA Lock", "Lightweight", "Expandable", "ABS+PC"),
        "specs": (),
    }, attrs={"colour": COLOURS, "size": ("20in", "24in", "28in")}),
    _leaf(("luggage & bags", "luggage & travel bags", "travel duffels"), {
        "en": ("duffel bag", "travel bag", "weekender bag"),
        "fr": ("sac de voyage:m", "sac weekend:m", "sac polochon:m"),
        "es": ("bolso de viaje:m", "bolsa de viaje:f", "bolso deportivo de viaje:m"),
        "pt": ("bolsa de viagem:f", "bolsa de viagem grande:f", "mala de mão:f"),
        "it": ("borsone da viaggio:m", "borsa da viaggio:f", "borsone:m"),
        "de": ("Reisetasche:f", "Weekendertasche:f", "Duffle Bag:f"),
        "pl": ("torba podróżna:f", "torba weekendowa:f", "torba na wyjazd:f"),
        "ar": ("حقيبة دافل:f", "حقيبة رياضية للسفر:f", "شنطة ويك اند:f"),
        "ko": ("보스턴백", "여행용 더플백", "더플백"),
        "ja": ("ボストンバッグ", "旅行バッグ", "ダッフルバッグ"),
    }, {
        "nouns": ("Duffel Bag", "Travel Bag", "Weekender Bag", "Gym Duffle"),
        "features": ("Large Capacity", "Foldable", "Waterproof", "Shoe Compartment", "Overnight", "Carry On"),
        "specs": ("40L", "55L"),
    }, attrs={"colour": COLOURS}),
    _leaf(("luggage & bags", "wallets & card holders", "wallets"), {
        "en": ("wallet", "slim wallet", "bifold wallet"),
        "fr": ("portefeuille:m", "porte-monnaie:m", "portefeuille compact:m"),
        "es": ("cartera:f", "billetera:f", "monedero:m"),
        "pt": ("carteira:f", "carteira slim:f"),
        "it": ("portafoglio:m", "portafoglio slim:m", "portamonete:m"),
        "de": ("Geldbörse:f", "Portemonnaie:n", "Brieftasche:f"),
        "pl": ("portfel:m", "cienki portfel:m"),
        "ar": ("محفظة:f", "محفظة نقود:f", "محفظة صغيرة:f"),
        "ko": ("지갑", "반지갑", "장지갑"),
        "ja": ("財布", "長財布", "二つ折り財布"),
    }, {
        "nouns": ("Wallet", "Bifold Wallet", "Slim Wallet", "Short Wallet", "Long Purse"),
        "features": ("RFID Blocking", "Multi Slots", "Zipper Coin Pocket", "Minimalist", "Vintage",
                     "Photo Window"),
        "specs": (),
    }, attrs={"colour": COLOURS, "material": ("leather",), "audience": AUDIENCES}),
    _leaf(("luggage & bags", "wallets & card holders", "card & id holders"), {
        "en": ("card holder", "id card holder", "credit card holder"),
        "fr": ("porte-cartes:m", "étui carte bancaire:m", "porte carte:m"),
        "es": ("tarjetero:m", "porta tarjetas:m", "tarjetero rfid:m"),
        "pt": ("porta cartão:m", "porta cartões:m"),
        "it": ("porta carte di credito:m", "portacarte:m"),
        "de": ("Kartenetui:n", "Kartenhalter:m", "Kreditkartenetui:n"),
        "pl": ("etui na karty:n", "wizytownik:m", "etui na karty kredytowe:n"),
        "ar": ("حامل بطاقات:m", "حافظة بطاقات:f", "حامل بطاقات الائتمان:m"),
        "ko": ("카드지갑", "카드 케이스", "명함지갑"),
        "ja": ("カードケース", "名刺入れ", "パスケース"),
    }, {
        "nouns": ("Card Holder", "ID Card Holder", "Credit Card Case", "Card Sleeve"),
        "features": ("RFID Blocking", "Slim", "Pop Up", "Business", "Mini", "Magnetic"),
        "specs": (),
    }, attrs={"colour": COLOURS, "material": ("leather",), "audience": AUDIENCES}),
    # ---- phones ----
    _leaf((*_PHONE_ACC, "protective gear", "phone cases"), {
        "en": ("case", "phone case", "cover"),
        "fr": ("coque:f", "étui:m", "coque de protection:f"),
        "es": ("funda:f", "carcasa:f", "funda de móvil:f"),
        "pt": ("capinha:f", "capa:f", "capa de celular:f"),
        "it": ("cover:f", "custodia:f", "custodia a libro:f"),
        "de": ("Handyhülle:f", "Hülle:f", "Schutzhülle:f"),
        "pl": ("etui:n", "obudowa:f", "plecki:pl"),
        "ar": ("جراب:m", "كفر:m", "جراب موبايل:m"),
        "ko": ("케이스", "폰케이스", "휴대폰 케이스"),
        "ja": ("ケース", "スマホケース", "手帳型ケース"),
    }, {
        "nouns": ("Case", "Phone Case", "Cover", "Shockproof Case", "Flip Case"),
        "features": ("Shockproof", "Camera Protection", "Matte", "Magnetic", "Full Body", "Slim"),
        "specs": (),
    }, attrs={"brand": PHONE_MODELS, "colour": COLOURS, "material": ("silicone", "leather")},
        brand_style="for", brand_prob=0.85),
    _leaf((*_PHONE_ACC, "protective gear", "screen protectors"), {
        "en": ("screen protector", "tempered glass", "glass screen protector"),
        "fr": ("protection écran:f", "verre trempé:m", "film protecteur:m"),
        "es": ("protector de pantalla:m", "cristal templado:m", "mica:f"),
        "pt": ("película:f", "película de vidro:f", "película 3d:f"),
        "it": ("pellicola:f", "vetro temperato:m", "pellicola protettiva:f"),
        "de": ("Panzerglas:n", "Schutzfolie:f", "Displayschutz:m"),
        "pl": ("szkło hartowane:n", "folia ochronna:f", "szkło ochronne:n"),
        "ar": ("اسكرينة:f", "لزقة شاشة:f", "واقي شاشة:m"),
        "ko": ("강화유리", "액정보호필름", "보호필름"),
        "ja": ("ガラスフィルム", "保護フィルム", "液晶保護フィルム"),
    }, {
        "nouns": ("Tempered Glass", "Screen Protector", "Protective Glass", "Film"),
        "features": ("9H", "Full Cover", "HD Clear", "Anti-Spy", "Privacy", "Bubble Free"),
        "specs": ("1/2/3Pcs", "3PCS", "2 Pack"),
    }, attrs={"brand": PHONE_MODELS}, brand_style="for", brand_prob=0.85),
    _leaf((*_PHONE_ACC, "power & charging", "chargers"), {
        "en": ("charger", "fast charger", "usb c charger"),
        "fr": ("chargeur:m", "chargeur rapide:m", "chargeur usb c:m"),
        "es": ("cargador:m", "cargador rápido:m", "cargador tipo c:m"),
        "pt": ("carregador:m", "carregador turbo:m", "carregador tipo c:m"),
        "it": ("caricabatterie:m", "caricatore rapido:m", "alimentatore usb c:m"),
        "de": ("Ladegerät:n", "Schnellladegerät:n", "USB C Netzteil:n"),
        "pl": ("ładowarka:f", "szybka ładowarka:f", "ładowarka usb c:f"),
        "ar": ("شاحن:m", "شاحن سريع:m", "شاحن تايب سي:m"),
        "ko": ("충전기", "고속충전기", "c타입 충전기"),
        "ja": ("充電器", "急速充電器", "usb-c 充電器"),
    }, {
        "nouns": ("Charger", "Fast Charger", "USB C Charger", "Wall Charger", "GaN Charger"),
        "features": ("PD", "QC 3.0", "Type C", "Quick Charge", "EU Plug", "Dual Port"),
        "specs": (),
    }, attrs={"brand": ("baseus", "ugreen", "xiaomi"), "size": ("20w", "65w")}),
    _leaf((*_PHONE_ACC, "power & charging", "charging cables"), {
        "en": ("charging cable", "usb c cable", "charger cable"),
        "fr": ("câble chargeur:m", "câble usb c:m", "câble de charge:m"),
        "es": ("cable cargador:m", "cable usb c:m", "cable tipo c:m"),
        "pt": ("cabo carregador:m", "cabo usb c:m", "cabo tipo c:m"),
        "it": ("cavo di ricarica:m", "cavo usb c:m", "cavo caricabatterie:m"),
        "de": ("Ladekabel:n", "USB C Kabel:n", "Datenkabel:n"),
        "pl": ("kabel do ładowania:m", "kabel usb c:m", "przewód usb:m"),
        "ar": ("كابل شحن:m", "سلك شاحن:m", "كيبل تايب سي:m"),
        "ko": ("충전 케이블", "c타입 케이블", "고속충전 케이블"),
        "ja": ("充電ケーブル", "usb-c ケーブル", "急速充電ケーブル"),
    }, {
        "nouns": ("Charging Cable", "USB C Cable", "Type C Cable", "Data Cable"),
        "features": ("Fast Charging", "Braided", "100W", "PD", "Nylon", "Durable"),
        "specs": ("1/2Pcs",),
    }, attrs={"brand": ("baseus", "ugreen"), "size": ("1m", "2m")}),
    # ---- consumer electronics ----
    _leaf((*_AUDIO, "wireless earbuds"), {
        "en": ("wireless earbuds", "bluetooth earphones", "tws earbuds"),
        "fr": ("écouteurs sans fil:mp", "écouteurs bluetooth:mp", "oreillettes bluetooth:fp"),
        "es": ("audífonos inalámbricos:mp", "auriculares bluetooth:mp", "audífonos bluetooth:mp"),
        "pt": ("fone de ouvido bluetooth:m", "fone sem fio:m", "fone bluetooth:m"),
        "it": ("auricolari bluetooth:mp", "cuffiette wireless:fp", "auricolari senza fili:mp"),
        "de": ("Bluetooth Kopfhörer:pl", "kabellose Kopfhörer:pl", "In-Ear-Kopfhörer:pl"),
        "pl": ("słuchawki bezprzewodowe:pl", "słuchawki bluetooth:pl", "słuchawki douszne:pl"),
        "ar": ("سماعات بلوتوث:f", "سماعة لاسلكية:f", "ايربودز:f"),
        "ko": ("무선 이어폰", "블루투스 이어폰", "이어버드"),
        "ja": ("ワイヤレスイヤホン", "bluetooth イヤホン", "完全ワイヤレスイヤホン"),
    }, {
        "nouns": ("Wireless Earbuds", "Bluetooth Earphones", "TWS Earbuds", "Earphones"),
        "features": ("Bluetooth 5.3", "Noise Cancelling", "HiFi Stereo", "Touch Control", "Charging Case",
                     "Sports"),
        "specs": (),
    }, attrs={"brand": ("xiaomi", "huawei", "baseus", "lenovo"), "colour": ("black", "white", "pink")}),
    _leaf((*_AUDIO, "gaming headsets"), {
        "en": ("gaming headset", "headset with mic", "gaming headphones"),
        "fr": ("casque gamer:m", "casque gaming:m", "casque avec micro:m"),
        "es": ("audífonos gamer:mp", "auriculares gaming:mp", "diadema gamer:f"),
        "pt": ("headset gamer:m", "fone de ouvido gamer:m", "headset com microfone:m"),
        "it": ("cuffie gaming:fp", "cuffie con microfono:fp", "headset gaming:m"),
        "de": ("Gaming Headset:n", "Headset mit Mikrofon:n", "Gaming Kopfhörer:pl"),
        "pl": ("słuchawki gamingowe:pl", "słuchawki z mikrofonem:pl", "headset dla graczy:m"),
        "ar": ("سماعة قيمنق:f", "سماعة ألعاب:f", "سماعة رأس مع مايك:f"),
        "ko": ("게이밍 헤드셋", "헤드셋", "마이크 헤드셋"),
        "ja": ("ゲーミングヘッドセット", "ヘッドセット マイク付き", "ゲーミング ヘッドホン"),
    }, {
        "nouns": ("Gaming Headset", "Gaming Headphones", "Headset", "Over-Ear Headphones"),
        "features": ("With Mic", "7.1 Surround", "RGB", "Wired", "Noise Cancelling Mic", "For PC PS4"),
        "specs": (),
    }, attrs={"brand": ("lenovo", "redragon"), "colour": ("black", "white", "pink")}),
    _leaf((*_WEARABLE, "smart watches"), {
        "en": ("smart watch", "smartwatch", "fitness smart watch"),
        "fr": ("montre connectée:f", "montre intelligente:f", "smartwatch:f"),
        "es": ("reloj inteligente:m", "smartwatch:m", "reloj smart:m"),
        "pt": ("relógio inteligente:m", "smartwatch:m", "relógio smart:m"),
        "it": ("smartwatch:m", "orologio intelligente:m", "orologio smart:m"),
        "de": ("Smartwatch:f", "Smart Watch:f", "Smartwatch mit Telefonfunktion:f"),
        "pl": ("smartwatch:m", "inteligentny zegarek:m", "zegarek smart:m"),
        "ar": ("ساعة ذكية:f", "سمارت واتش:f"),
        "ko": ("스마트워치", "스마트 워치", "스마트시계"),
        "ja": ("スマートウォッチ", "スマートウォッチ 通話機能"),
    }, {
        "nouns": ("Smart Watch", "Smartwatch", "Sports Smart Watch"),
        "features": ("Bluetooth Call", "Heart Rate Monitor", "AMOLED", "Waterproof", "Sports Modes",
                     "Always-On"),
        "specs": (),
    }, attrs={"brand": ("xiaomi", "huawei"), "colour": ("black", "white", "pink"), "audience": AUDIENCES}),
    _leaf((*_WEARABLE, "smart wristbands"), {
        "en": ("fitness tracker", "smart band", "activity tracker"),
        "fr": ("bracelet connecté:m", "bracelet fitness:m", "tracker d'activité:m"),
        "es": ("pulsera inteligente:f", "pulsera de actividad:f", "smart band:f"),
        "pt": ("pulseira inteligente:f", "smartband:f", "pulseira fitness:f"),
        "it": ("braccialetto fitness:m", "braccialetto intelligente:m", "fitness tracker:m"),
        "de": ("Fitnessarmband:n", "Fitnesstracker:m", "Aktivitätstracker:m"),
        "pl": ("opaska sportowa:f", "smartband:m", "opaska fitness:f"),
        "ar": ("سوار ذكي:m", "اسورة رياضية ذكية:f", "باند ذكي:m"),
        "ko": ("스마트밴드", "스마트 밴드", "활동량 측정 밴드"),
        "ja": ("スマートバンド", "活動量計", "フィットネストラッカー"),
    }, {
        "nouns": ("Smart Band", "Fitness Tracker", "Smart Bracelet", "Activity Tracker"),
        "features": ("Heart Rate", "Blood Oxygen", "Sleep Monitor", "Waterproof", "Step Counter"),
        "specs": (),
    }, attrs={"brand": ("xiaomi", "huawei"), "colour": ("black", "pink")}),
    # ---- home & garden: kitchen ----
    _leaf((*_KITCHEN, "cups & drinkware", "mugs"), {
        "en": ("mug", "coffee mug", "tea mug"),
        "fr": ("mug:m", "tasse à café:f", "grande tasse:f"),
        "es": ("taza:f", "taza para café:f", "tazón:m"),
        "pt": ("caneca:f", "caneca de café:f", "xícara grande:f"),
        "it": ("tazza:f", "tazza mug:f", "mug:f"),
        "de": ("Tasse:f", "Kaffeebecher:m", "Kaffeetasse:f"),
        "pl": ("kubek:m", "kubek do kawy:m", "kubek na herbatę:m"),
        "ar": ("كوب:m", "مج:m", "كوب قهوة:m"),
        "ko": ("머그컵", "머그", "커피잔"),
        "ja": ("マグカップ", "マグ", "コーヒーカップ"),
    }, {
        "nouns": ("Mug", "Coffee Mug", "Tea Cup", "Travel Mug"),
        "features": ("With Lid", "With Handle", "Cute", "Creative", "Office", "Gift"),
        "specs": (),
    }, attrs={"colour": ("white", "black", "pink", "blue"), "material": ("ceramic", "glass", "steel"),
              "size": ("350ml", "500ml")}),
    _leaf((*_KITCHEN, "cups & drinkware", "wine glasses"), {
        "en": ("wine glasses", "wine glass", "champagne flutes"),
        "fr": ("verre à vin:m", "verres à pied:mp", "flûtes à champagne:fp"),
        "es": ("copas de vino:fp", "copa de vino:f", "copas de cristal:fp"),
        "pt": ("taça de vinho:f", "taças de cristal:fp", "taça:f"),
        "it": ("calici da vino:mp", "bicchieri da vino:mp", "calice:m"),
        "de": ("Weingläser:pl", "Weinglas:n", "Sektgläser:pl"),
        "pl": ("kieliszki do wina:pl", "kieliszek:m", "kieliszki do szampana:pl"),
        "ar": ("كؤوس كريستال:f", "كاسات بساق:f", "كأس نبيذ:m"),
        "ko": ("와인잔", "와인글라스", "샴페인잔"),
        "ja": ("ワイングラス", "シャンパングラス", "グラス ワイン"),
    }, {
        "nouns": ("Wine Glasses", "Wine Glass", "Champagne Flutes", "Goblet"),
        "features": ("Crystal", "Lead-Free", "Set of 2", "Set of 4", "Stemmed", "Party"),
        "specs": (),
    }, attrs={"size": ("350ml", "500ml")}),
    _leaf((*_KITCHEN, "knives & cutting boards", "kitchen knives"), {
        "en": ("kitchen knife", "chef knife", "knife set"),
        "fr": ("couteau de cuisine:m", "couteau de chef:m", "set de couteaux:m"),
        "es": ("cuchillo de cocina:m", "cuchillo de chef:m", "juego de cuchillos:m"),
        "pt": ("faca de cozinha:f", "faca de chef:f", "jogo de facas:m"),
        "it": ("coltello da cucina:m", "coltello da chef:m", "set di coltelli:m"),
        "de": ("Küchenmesser:n", "Kochmesser:n", "Messerset:n"),
        "pl": ("nóż kuchenny:m", "noże kuchenne:pl", "nóż szefa kuchni:m"),
        "ar": ("سكين مطبخ:f", "طقم سكاكين:m", "سكين شيف:f"),
        "ko": ("식칼", "주방칼", "셰프 나이프"),
        "ja": ("包丁", "牛刀", "三徳包丁"),
    }, {
        "nouns": ("Kitchen Knife", "Chef Knife", "Knife Set", "Santoku Knife", "Cleaver"),
        "features": ("Japanese", "Damascus Pattern", "Ultra Sharp", "Professional", "Forged",
                     "Ergonomic Handle"),
        "specs": (),
    }, attrs={"material": ("steel", "ceramic"), "size": ("6in", "8in")}),
    _leaf((*_KITCHEN, "knives & cutting boards", "cutting boards"), {
        "en": ("cutting board", "chopping board"),
        "fr": ("planche à découper:f", "planche de cuisine:f"),
        "es": ("tabla de cortar:f", "tabla para picar:f"),
        "pt": ("tábua de corte:f", "tábua de carne:f"),
        "it": ("tagliere:m", "tagliere da cucina:m"),
        "de": ("Schneidebrett:n", "Frühstücksbrett:n"),
        "pl": ("deska do krojenia:f", "deska kuchenna:f"),
        "ar": ("لوح تقطيع:m", "لوحة تقطيع:f"),
        "ko": ("도마", "주방 도마"),
        "ja": ("まな板", "カッティングボード"),
    }, {
        "nouns": ("Cutting Board", "Chopping Board", "Serving Board"),
        "features": ("Double Sided", "Thick", "With Juice Groove", "Antibacterial", "Large"),
        "specs": (),
    }, attrs={"material": ("wood",), "size": ("30x20cm", "40x30cm")}),
    # ---- home & garden: party ----
    _leaf((*_PARTY, "flags"), {
        "en": ("flag", "outdoor flag", "garden flag"),
        "fr": ("drapeau:m", "drapeau extérieur:m", "drapeau de jardin:m"),
        "es": ("bandera:f", "bandera grande:f", "bandera para exterior:f"),
        "pt": ("bandeira:f", "bandeira grande:f", "bandeira para jardim:f"),
        "it": ("bandiera:f", "bandiera da esterno:f", "bandiera grande:f"),
        "de": ("Flagge:f", "Fahne:f", "Gartenflagge:f"),
        "pl": ("flaga:f", "flaga ogrodowa:f", "duża flaga:f"),
        "ar": ("علم:m", "علم كبير:m", "راية:f"),
        "ko": ("깃발", "대형 깃발", "정원 깃발"),
        "ja": ("旗", "フラッグ", "ガーデンフラッグ"),
    }, {
        "nouns": ("Flag", "Garden Flag", "Outdoor Flag", "House Flag"),
        "features": ("Double Sided", "Polyester", "Brass Grommets", "Fade Resistant", "Vivid Color"),
        "specs": (),
    }, attrs={"size": ("60x90cm", "90x150cm")}),
    _leaf((*_PARTY, "banners"), {
        "en": ("happy birthday banner", "party banner", "bunting"),
        "fr": ("banderole anniversaire:f", "guirlande fanions:f", "banderole joyeux anniversaire:f"),
        "es": ("banderín de cumpleaños:m", "guirnalda de banderines:f", "pancarta feliz cumpleaños:f"),
        "pt": ("faixa de aniversário:f", "bandeirinhas de festa:fp", "varal de bandeirinhas:m"),
        "it": ("festone buon compleanno:m", "striscione compleanno:m", "bandierine festa:fp"),
        "de": ("Geburtstagsbanner:n", "Girlande Happy Birthday:f", "Wimpelkette:f"),
        "pl": ("baner urodzinowy:m", "girlanda happy birthday:f", "girlanda z chorągiewkami:f"),
        "ar": ("بنر عيد ميلاد:m", "لافتة عيد ميلاد:f", "زينة أعلام للحفلات:f"),
        "ko": ("생일 가랜드", "파티 가랜드", "생일 현수막"),
        "ja": ("誕生日 ガーランド", "バースデーバナー", "ガーランド パーティー"),
    }, {
        "nouns": ("Happy Birthday Banner", "Party Banner", "Bunting Garland", "Pennant Banner"),
        "features": ("Party Decoration", "Glitter", "Hanging", "Paper", "Pre-Strung"),
        "specs": (),
    }, attrs={"colour": ("pink", "blue", "black", "white")}),
    # ---- home & garden: crafts (a level name holding a bare comma) ----
    _leaf((*_CRAFTS, "yarn"), {
        "en": ("yarn", "knitting yarn", "crochet yarn"),
        "fr": ("fil à tricoter:m", "pelote de fil:f", "fil crochet:m"),
        "es": ("hilo para tejer:m", "estambre:m", "hilo de crochet:m"),
        "pt": ("linha de crochê:f", "fio para tricô:m", "novelo:m"),
        "it": ("filato:m", "gomitolo:m", "filato per uncinetto:m"),
        "de": ("Strickgarn:n", "Häkelgarn:n", "Garn:n"),
        "pl": ("włóczka:f", "kordonek:m", "włóczka do dziergania:f"),
        "ar": ("خيوط كروشيه:f", "خيط تريكو:m", "خيوط حياكة:f"),
        "ko": ("뜨개실", "코바늘 실", "실뭉치"),
        "ja": ("毛糸", "編み物 糸", "かぎ針 糸"),
    }, {
        "nouns": ("Yarn", "Knitting Yarn", "Crochet Yarn", "Yarn Ball"),
        "features": ("Soft", "Hand Knitting", "Baby", "Chunky", "DIY"),
        "specs": ("1 Ball", "5Pcs", "100g", "50g"),
    }, attrs={"colour": COLOURS, "material": ("cotton", "wool")}),
    _leaf((*_CRAFTS, "knitting needles"), {
        "en": ("knitting needles", "circular knitting needles", "knitting needle set"),
        "fr": ("aiguilles à tricoter:fp", "aiguille circulaire:f", "kit aiguilles à tricoter:m"),
        "es": ("agujas de tejer:fp", "agujas para tejer:fp", "agujas circulares:fp"),
        "pt": ("agulha de tricô:f", "agulhas de tricô:fp", "agulha circular:f"),
        "it": ("ferri da maglia:mp", "ferri circolari:mp", "kit ferri da maglia:m"),
        "de": ("Stricknadeln:pl", "Rundstricknadel:f", "Nadelspiel:n"),
        "pl": ("druty do dziergania:pl", "druty z żyłką:pl", "druty do robótek:pl"),
        "ar": ("إبر تريكو:f", "ابر حياكة:f", "طقم إبر تريكو:m"),
        "ko": ("뜨개바늘", "대바늘", "줄바늘"),
        "ja": ("編み針", "棒針", "輪針"),
    }, {
        "nouns": ("Knitting Needles", "Circular Knitting Needles", "Knitting Needle Set"),
        "features": ("2mm-10mm", "Double Pointed", "Smooth", "DIY Sweater", "11 Sizes"),
        "specs": (),
    }, attrs={"material": ("wood", "steel")}),
    # ---- beauty ----
    _leaf(("beauty & health", "makeup", "lip makeup", "lipstick"), {
        "en": ("lipstick", "matte lipstick", "long lasting lipstick"),
        "fr": ("rouge à lèvres:m", "rouge à lèvres mat:m", "rouge a levre:m"),
        "es": ("labial:m", "pintalabios:m", "labial mate:m"),
        "pt": ("batom:m", "batom matte:m", "batom de longa duração:m"),
        "it": ("rossetto:m", "rossetto opaco:m", "rossetto lunga durata:m"),
        "de": ("Lippenstift:m", "matter Lippenstift:m", "Lippenstift wasserfest:m"),
        "pl": ("pomadka:f", "szminka:f", "matowa pomadka:f"),
        "ar": ("أحمر شفاه:m", "روج:m", "روج مطفي:m"),
        "ko": ("립스틱", "매트 립스틱", "지속력 좋은 립스틱"),
        "ja": ("口紅", "リップスティック", "マット リップ"),
    }, {
        "nouns": ("Lipstick", "Matte Lipstick", "Velvet Lipstick"),
        "features": ("Long Lasting", "Waterproof", "Non-Stick Cup", "Moisturizing", "Makeup"),
        "specs": ("3.5g",),
    }, attrs={"colour": ("red", "pink")}),
    _leaf(("beauty & health", "makeup", "lip makeup", "lip gloss"), {
        "en": ("lip gloss", "lip oil", "plumping lip gloss"),
        "fr": ("gloss:m", "gloss à lèvres:m", "brillant à lèvres:m"),
        "es": ("brillo labial:m", "gloss:m", "brillo de labios:m"),
        "pt": ("gloss labial:m", "brilho labial:m", "lip gloss:m"),
        "it": ("lucidalabbra:m", "gloss labbra:m"),
        "de": ("Lipgloss:n", "Lippenglanz:m"),
        "pl": ("błyszczyk:m", "błyszczyk do ust:m"),
        "ar": ("ملمع شفاه:m", "جلوس:m", "قلوس:m"),
        "ko": ("립글로스", "글로시 립", "립오일"),
        "ja": ("リップグロス", "グロス", "リップオイル"),
    }, {
        "nouns": ("Lip Gloss", "Lip Oil", "Lip Glaze", "Glossy Lip Tint"),
        "features": ("Moisturizing", "Plumping", "Shimmer", "Mirror", "Makeup"),
        "specs": ("5ml",),
    }, attrs={"colour": ("red", "pink")}),
    _leaf(("beauty & health", "makeup", "eye makeup", "mascara"), {
        "en": ("mascara", "waterproof mascara", "lengthening mascara"),
        "fr": ("mascara:m", "mascara waterproof:m", "mascara volume:m"),
        "es": ("rímel:m", "máscara de pestañas:f", "rimel a prueba de agua:m"),
        "pt": ("rímel:m", "máscara de cílios:f", "rímel à prova d'água:m"),
        "it": ("mascara:m", "mascara waterproof:m", "mascara volumizzante:m"),
        "de": ("Wimperntusche:f", "Mascara:f", "wasserfeste Wimperntusche:f"),
        "pl": ("tusz do rzęs:m", "maskara:f", "wodoodporny tusz do rzęs:m"),
        "ar": ("ماسكارا:f", "مسكرة:f", "ماسكارا مقاومة للماء:f"),
        "ko": ("마스카라", "워터프루프 마스카라", "볼륨 마스카라"),
        "ja": ("マスカラ", "ウォータープルーフ マスカラ", "ロングマスカラ"),
    }, {
        "nouns": ("Mascara", "Waterproof Mascara", "Volume Mascara"),
        "features": ("Lengthening", "Curling", "Thick", "Smudge Proof", "4D Silk Fiber"),
        "specs": (),
    }, attrs={"colour": ("black", "blue")}),
    _leaf(("beauty & health", "makeup", "eye makeup", "eyeliner"), {
        "en": ("eyeliner", "liquid eyeliner", "eyeliner pencil"),
        "fr": ("eye-liner:m", "crayon yeux:m", "eyeliner liquide:m"),
        "es": ("delineador:m", "delineador de ojos:m", "delineador líquido:m"),
        "pt": ("delineador:m", "lápis de olho:m", "delineador líquido:m"),
        "it": ("eyeliner:m", "matita occhi:f", "eyeliner liquido:m"),
        "de": ("Eyeliner:m", "Kajal:m", "Eyeliner Stift:m"),
        "pl": ("eyeliner:m", "kredka do oczu:f", "eyeliner w płynie:m"),
        "ar": ("آيلاينر:m", "كحل:m", "قلم كحل:m"),
        "ko": ("아이라이너", "펜슬 아이라이너", "리퀴드 아이라이너"),
        "ja": ("アイライナー", "リキッドアイライナー", "ペンシルアイライナー"),
    }, {
        "nouns": ("Eyeliner", "Liquid Eyeliner", "Eyeliner Pencil", "Eyeliner Pen"),
        "features": ("Waterproof", "Quick Dry", "Long Lasting", "Smooth", "Matte"),
        "specs": (),
    }, attrs={"colour": ("black", "white", "blue")}),
    # ---- sports ----
    _leaf((*_YOGA, "yoga mats"), {
        "en": ("yoga mat", "exercise mat", "non slip yoga mat"),
        "fr": ("tapis de yoga:m", "tapis de sol:m", "tapis yoga antidérapant:m"),
        "es": ("esterilla de yoga:f", "tapete de yoga:m", "colchoneta:f"),
        "pt": ("tapete de yoga:m", "colchonete:m", "tapete de ioga:m"),
        "it": ("tappetino yoga:m", "materassino:m", "tappetino fitness:m"),
        "de": ("Yogamatte:f", "Gymnastikmatte:f", "Fitnessmatte:f"),
        "pl": ("mata do jogi:f", "mata do ćwiczeń:f", "mata fitness:f"),
        "ar": ("سجادة يوغا:f", "حصيرة يوجا:f", "مفرش رياضة:m"),
        "ko": ("요가매트", "운동 매트", "요가 매트"),
        "ja": ("ヨガマット", "トレーニングマット", "ヨガマット 滑り止め"),
    }, {
        "nouns": ("Yoga Mat", "Exercise Mat", "Fitness Mat", "Pilates Mat"),
        "features": ("Non Slip", "TPE", "Thick", "With Carry Strap", "183x61cm"),
        "specs": (),
    }, attrs={"colour": COLOURS, "size": ("6mm", "10mm")}),
    _leaf((*_YOGA, "resistance bands"), {
        "en": ("resistance bands", "exercise band", "pull up band"),
        "fr": ("élastique fitness:m", "bande de résistance:f", "élastique musculation:m"),
        "es": ("bandas elásticas:fp", "banda de resistencia:f", "ligas de ejercicio:fp"),
        "pt": ("elástico extensor:m", "faixa elástica:f", "mini band:f"),
        "it": ("elastici fitness:mp", "bande elastiche:fp", "fascia elastica:f"),
        "de": ("Fitnessband:n", "Widerstandsband:n", "Gymnastikband:n"),
        "pl": ("guma do ćwiczeń:f", "gumy oporowe:pl", "taśma oporowa:f"),
        "ar": ("حبل مطاطي:m", "أحزمة مقاومة:f", "مطاط تمارين:m"),
        "ko": ("라텍스 밴드", "운동 밴드", "저항밴드"),
        "ja": ("トレーニングチューブ", "エクササイズバンド", "ゴムバンド 筋トレ"),
    }, {
        "nouns": ("Resistance Bands", "Exercise Band", "Pull Up Band", "Loop Bands"),
        "features": ("5 Levels", "Latex", "Home Gym", "Booty", "Workout"),
        "specs": (),
    }, attrs={"colour": COLOURS}),
    _leaf((*_CAMPING, "tents"), {
        "en": ("tent", "camping tent", "pop up tent"),
        "fr": ("tente:f", "tente de camping:f", "tente instantanée:f"),
        "es": ("tienda de campaña:f", "casa de campaña:f", "carpa:f"),
        "pt": ("barraca:f", "barraca de camping:f"),
        "it": ("tenda:f", "tenda da campeggio:f", "tenda canadese:f"),
        "de": ("Zelt:n", "Campingzelt:n", "Kuppelzelt:n"),
        "pl": ("namiot:m", "namiot turystyczny:m", "namiot kempingowy:m"),
        "ar": ("خيمة:f", "خيمة رحلات:f", "خيمة تخييم:f"),
        "ko": ("텐트", "캠핑 텐트", "원터치 텐트"),
        "ja": ("テント", "キャンプ テント", "ワンタッチテント"),
    }, {
        "nouns": ("Tent", "Camping Tent", "Pop Up Tent", "Dome Tent"),
        "features": ("Waterproof", "Ultralight", "Automatic", "Outdoor", "Double Layer"),
        "specs": (),
    }, attrs={"colour": ("green", "blue"), "size": ("2p", "4p")}),
    _leaf((*_CAMPING, "sleeping bags"), {
        "en": ("sleeping bag", "camping sleeping bag", "winter sleeping bag"),
        "fr": ("sac de couchage:m", "duvet de camping:m"),
        "es": ("saco de dormir:m", "bolsa de dormir:f"),
        "pt": ("saco de dormir:m", "saco de dormir camping:m"),
        "it": ("sacco a pelo:m", "sacco a pelo invernale:m"),
        "de": ("Schlafsack:m", "Mumienschlafsack:m", "Deckenschlafsack:m"),
        "pl": ("śpiwór:m", "śpiwór turystyczny:m"),
        "ar": ("كيس نوم:m", "حقيبة نوم:f"),
        "ko": ("침낭", "동계 침낭"),
        "ja": ("寝袋", "シュラフ"),
    }, {
        "nouns": ("Sleeping Bag", "Camping Sleeping Bag", "Envelope Sleeping Bag", "Mummy Sleeping Bag"),
        "features": ("Ultralight", "Winter", "Warm", "Compact", "Waterproof"),
        "specs": (),
    }, attrs={"colour": COLOURS}),
)
