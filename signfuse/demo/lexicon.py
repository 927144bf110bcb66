"""The words of the synthetic sign language and of its action descriptions.

The tiny tokenizer shipped in ``signfuse/assets/tiny_mt5`` is trained on text built from
these lists (``tools/make_tiny_assets.py``), and the synthetic generator
(``signfuse.demo.synthetic``) draws its sentences and descriptions from them. Change a
list here and regenerate the assets.
"""

# Glosses of the synthetic lexicon (English words, one sign each).
WORDS = [
    "i", "you", "we", "they", "mother", "father", "friend", "teacher",
    "want", "like", "eat", "drink", "go", "come", "see", "read",
    "water", "apple", "book", "home", "school", "today", "tomorrow", "yesterday",
    "happy", "sad", "big", "small", "hot", "cold", "good", "bad", "yes", "no", "not", "very",
]

# Phrases that action descriptions are made of.
DESCRIPTION_PHRASES = [
    "right hand moves up to the chin", "right hand moves down to the chest",
    "left hand moves up to the forehead", "both hands move down", "both hands move up",
    "both hands move apart", "both hands move together", "right hand moves in a circle",
    "right hand moves forward", "right hand moves to the left", "right hand moves to the right",
    "hand touches chin", "hand touches forehead", "hand touches chest", "hand taps twice",
    "fist", "open palm", "index finger points", "flat hand", "bent fingers",
    "mouth smiles", "mouth frowns", "cheeks puff out", "lips pressed together",
    "eyebrows raised", "eyebrows lowered", "head nods", "head shakes", "tongue out",
    "person moves hand to left", "signer pauses", "hands rest",
]

PROMPTS = [
    "Translate sign language video to Chinese: ",
    "Translate sign language video to English: ",
]
