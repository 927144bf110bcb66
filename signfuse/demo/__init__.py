"""The demo (``signfuse demo``, ``run``) and the synthetic benchmark it trains on (``synthetic``,
``synthetic_video``, ``lexicon``): a sign language whose paired words only the descriptions tell apart."""
