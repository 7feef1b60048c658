"""Ego4D natural-language queries: given a clip's video features and a question, find the answer window.

``data`` reads the official annotation JSON and per-clip feature files; ``synthetic`` writes an
embedded dataset in exactly those formats; ``trainer.models.vslnet`` holds the VSLNet family (VSLBase, VSLNet,
DeepVSLNet, LightVSLNet) with FiLM conditioning; ``metrics`` is the official evaluator;
``dataset`` holds a loaded dataset and its token ids; ``loss`` is VSLNet's objective and KD term;
``windows`` turns logits into answer windows and scores them; ``train`` trains, distils, evaluates
and saves or loads checkpoints; ``compress`` adapts CBKD and PTQ to these models.
"""
