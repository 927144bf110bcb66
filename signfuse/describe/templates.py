"""The words of the rules describer: one segment's attributes -> one English or Chinese text.

A text is a list of clauses joined by "; " (English) or "；" (Chinese), in priority order:
right hand, left hand, mouth, mouth corners, eyebrows, head, the two hands together, then
the handshapes (the weakest cue). States that are the resting default (mouth closed, corners
neutral, eyebrows neutral, head still, no tilt) are not mentioned. When a text would exceed
the budget (``count_units`` > ``max_tokens``) the lowest-priority clauses are dropped, and
a first clause that alone is too long is cut (``fit``).

``which`` (``--rules_clauses``): "all" the clauses above; "face" only the face's (mouth, mouth
corners, eyebrows, head): a segment whose face rests gets the empty text, which readers skip, so
the texts are short and appear only where the face does something; "hands" only the hands'.

Budget units (``count_units``): English counts whitespace-separated words, Chinese counts
characters (punctuation included, spaces not). mT5's SentencePiece cuts a common English
word into 1-2 pieces and a Chinese character into about one, so keep ``--desc_max_tokens``
a little under the text encoder's own limit when a hard guarantee matters.

``TEMPLATE_VERSION`` is part of the generator version written into every description file
(``rules.RULES_VERSION``): change it whenever a phrase changes, so that ``signfuse describe``
rewrites the files and a checkpoint trained on the old texts is flagged.
"""
from signfuse.config import DESCRIBE_LANGUAGES, RULES_CLAUSES

TEMPLATE_VERSION = "1"
LANGUAGES = DESCRIBE_LANGUAGES  # ("en", "zh")
CLAUSE_SETS = RULES_CLAUSES  # ("all", "face", "hands"): what a text keeps (--rules_clauses)
SEPARATOR = {"en": "; ", "zh": "；"}

HAND = {"en": {"right_hand": "right hand", "left_hand": "left hand"},
        "zh": {"right_hand": "右手", "left_hand": "左手"}}
# Where a hand is, after a verb of rest or a movement that continues ("at"), or where a
# movement ends ("to").
AT = {"en": {"low": "below the chest", "chest": "at the chest", "face": "at the face",
             "above_head": "above the head"},
      "zh": {"low": "胸部以下", "chest": "胸前", "face": "面部", "above_head": "头顶上方"}}
TO = {"en": {"low": "to below the chest", "chest": "to the chest", "face": "to the face",
             "above_head": "to above the head"},
      "zh": AT["zh"]}
DIRECTION = {"en": {"up": "up", "down": "down", "left": "left", "right": "right", "circle": "in a circle"},
             "zh": {"up": "向上", "down": "向下", "left": "向左", "right": "向右", "circle": "画圈"}}
SPEED = {"en": {"slow": " slowly", "fast": " quickly"}, "zh": {"slow": "缓慢", "fast": "快速"}}
REPEATED = {"en": " repeatedly", "zh": "反复"}
PHRASES = {
    "en": {
        "absent": "{hand} not visible",
        "hold": "{hand} holds {at}",
        "move_at": "{hand} moves {direction}{manner} {at}",
        "move_to": "{hand} moves {direction}{manner} {to}",
        "mouth": {"open": "mouth open", "wide": "mouth wide open"},
        "corners": {"up": "mouth corners up", "down": "mouth corners down"},
        "eyebrows": {"raised": "eyebrows raised", "lowered": "eyebrows lowered"},
        "head": {"nod": "head nods", "shake": "head shakes"},
        "tilt": {"left": "head tilted left", "right": "head tilted right"},
        "relation": {"symmetric": "both hands move in parallel", "mirrored": "both hands move as mirror images"},
        "close": "hands close together",
        "shape": {"open": "{hand} seems open", "bent": "{hand} fingers seem bent",
                  "closed": "{hand} seems closed"},
    },
    "zh": {
        "absent": "{hand}不可见",
        "hold": "{hand}停在{at}",
        "move_at": "{hand}在{at}{manner}{direction}移动",
        "move_to": "{hand}{manner}{direction}移到{to}",
        "mouth": {"open": "嘴张开", "wide": "嘴张大"},
        "corners": {"up": "嘴角上扬", "down": "嘴角下垂"},
        "eyebrows": {"raised": "眉毛上扬", "lowered": "眉毛压低"},
        "head": {"nod": "点头", "shake": "摇头"},
        "tilt": {"left": "头向左倾", "right": "头向右倾"},
        "relation": {"symmetric": "双手同向移动", "mirrored": "双手镜像移动"},
        "close": "双手靠近",
        "shape": {"open": "{hand}似乎张开", "bent": "{hand}手指似乎弯曲", "closed": "{hand}似乎握拢"},
    },
}


def hand_clause(name: str, hand: dict, ends: bool, language: str) -> str:
    """The clause of one hand: not visible, holds somewhere, or moves (ending there when ``ends``)."""
    words = PHRASES[language]
    label = HAND[language][name]
    if hand["location"] == "absent":
        return words["absent"].format(hand=label)
    at, to = AT[language][hand["location"]], TO[language][hand["location"]]
    if hand["movement"] == "hold":
        return words["hold"].format(hand=label, at=at)
    circle = hand.get("path") == "circle"
    direction = DIRECTION[language]["circle" if circle else hand["movement"]]
    manner = SPEED[language].get(hand.get("speed"), "")
    if hand.get("repeated") and not circle:
        manner += REPEATED[language]
    template = words["move_to"] if ends and not circle else words["move_at"]
    return template.format(hand=label, direction=direction, manner=manner, at=at, to=to)


def face_clauses(attributes: dict, language: str) -> list:
    """The face's clauses: mouth, mouth corners, eyebrows, head movement and tilt (resting states
    unmentioned)."""
    words = PHRASES[language]
    out = []
    if attributes["mouth"] == "open":
        out.append(words["mouth"]["wide" if attributes.get("mouth_wide") else "open"])
    for key, table in (("mouth_corners", "corners"), ("eyebrows", "eyebrows")):
        if attributes.get(key) in words[table]:
            out.append(words[table][attributes[key]])
    head = attributes.get("head", {})
    if head.get("movement") in words["head"]:
        out.append(words["head"][head["movement"]])
    if head.get("tilt") in words["tilt"]:
        out.append(words["tilt"][head["tilt"]])
    return out


def clauses(attributes: dict, ends: dict, language: str, which: str = "all") -> list:
    """The clauses of a segment, in priority order (see the module's docstring); ``which``
    (``CLAUSE_SETS``): all of them, the face's only, or the hands' only."""
    words = PHRASES[language]
    moves = [hand_clause(name, attributes[name], ends[name], language) for name in ("right_hand", "left_hand")]
    together = []
    hands = attributes.get("hands", {})
    if hands.get("relation") in words["relation"]:
        together.append(words["relation"][hands["relation"]])
    if hands.get("close"):
        together.append(words["close"])
    for name in ("right_hand", "left_hand"):
        shape = attributes[name].get("handshape")
        if shape in words["shape"]:
            together.append(words["shape"][shape].format(hand=HAND[language][name]))
    face = face_clauses(attributes, language)
    return {"all": moves + face + together, "face": face, "hands": moves + together}[which]


def count_units(text: str, language: str) -> int:
    """Budget units of ``text``: words (English) or characters without spaces (Chinese)."""
    if language == "zh":
        return sum(not ch.isspace() for ch in text)
    return len(text.split())


def cut(text: str, max_units: int, language: str) -> str:
    """The first ``max_units`` units of ``text``."""
    if language == "zh":
        kept, units = [], 0
        for ch in text:
            units += not ch.isspace()
            if units > max_units:
                break
            kept.append(ch)
        return "".join(kept).strip()
    return " ".join(text.split()[:max_units])


def fit(parts: list, max_tokens: int, language: str) -> str:
    """``parts`` joined, dropping the last ones while the text is over ``max_tokens`` units."""
    separator = SEPARATOR[language]
    while len(parts) > 1 and count_units(separator.join(parts), language) > max_tokens:
        parts = parts[:-1]
    text = separator.join(parts)
    return text if count_units(text, language) <= max_tokens else cut(text, max_tokens, language)


def render(attributes: dict, ends: dict, language: str, max_tokens: int, which: str = "all") -> str:
    """The text of one segment: its clauses (``which``), within ``max_tokens`` budget units; ""
    when it has none (a resting face with ``which`` "face")."""
    parts = clauses(attributes, ends, language, which)
    return fit(parts, max_tokens, language) if parts else ""
