"""Distillation (`cogumi distill`): turn the judged failures into training data, retrain, re-score.

    config.py         the `distill` config section (teacher settings, templates, retraining)
    self_critique.py  the model critiques and rewrites its failed answers (Ray Data generation);
                      rewrites are re-judged by the same judge, passing ones are kept
    teacher.py        the failures self-critique left: corrected by a teacher, either an LLM via
                      the judge clients (chain-of-thought, batch APIs) or the suite's references
    dataset.py        corrections -> Example rows (labelled by source), reverse pairs, replay of
                      the training set, MinHash deduplication
    evaluate.py       held-out pass rates before and after retraining, per domain
    stage.py          the pipeline stage
"""
