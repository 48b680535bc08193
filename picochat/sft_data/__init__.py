"""SFT data: conversation sources, picochat's own generators, and mixture files.

    mixture.py     load a mixture file (sources, weights, caps) and build it into a run
    sources.py     BIG-bench natural_instructions / topical_chat, chatterbot-corpus, ShareGPT
    generators.py  identity, arithmetic through the calculator, spelling, short multi-turn chats
"""
