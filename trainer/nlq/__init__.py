"""Ego4D natural-language queries: given a clip's video features and a question, find the answer window.

``data`` reads the official annotation JSON and per-clip feature files; ``synthetic`` writes an
embedded dataset in exactly those formats; ``models`` holds the VSLNet family (VSLBase, VSLNet,
DeepVSLNet, LightVSLNet) with FiLM conditioning; ``metrics`` is the official evaluator;
``train`` trains, distils and decodes answer windows.
"""
