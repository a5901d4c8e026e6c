"""Pipeline wiring: every stage reads only outputs of stages before it, with the right defaults."""

from cogumi_ray.cli import build_parser
from cogumi_ray.config import load_config
from cogumi_ray.pipeline import STAGES, _is_ref, stage_by_name


def test_every_reference_points_to_an_earlier_stage():
    cfg = load_config()
    seen: set[str] = set()
    for stage in STAGES:
        for ref in stage.inputs(cfg).values():
            if _is_ref(ref):
                assert ref.split(".")[0] in seen, f"{stage.name} reads {ref} before it is made"
        seen.add(stage.name)


def test_default_wiring_of_the_embedded_pipeline():
    cfg = load_config()
    ins = {s.name: s.inputs(cfg) for s in STAGES}
    # failures are mined on the training split with the trained base ...
    assert ins["generate"] == {"model": "train_base.model", "data": "curate.train"}
    assert ins["eval_base"]["model"] == "train_base.model"
    assert ins["eval_base"]["pre_sft"] == "model.model"  # the reference a trained base must beat
    # ... modifiers learn their domain's rows plus the base's failures with their corrections ...
    assert ins["modifiers"]["train"] == "curate.train"
    assert ins["modifiers"]["failures"] == "distill.dataset"
    assert ins["modifiers"]["model"] == "distill.model"
    assert ins["modifiers"]["test"] == "curate.test" and ins["modifiers"]["val"] == "curate.val"
    # ... and export + final eval use the distilled base.
    assert ins["export_gguf"] == {"model": "distill.model"}
    assert ins["eval"]["model"] == "distill.model"


def test_overrides_rewire_inputs():
    cfg = load_config(overrides={"eval.engine.kind": "llama_cpp", "modifiers.data": "/d/train.parquet",
                                 "generate.engine.kind": "openai", "generate.split": "val"})
    assert stage_by_name("eval").inputs(cfg)["model"] == "export_gguf.gguf"
    assert "pre_sft" not in stage_by_name("eval_base").inputs(cfg)  # a GGUF has no pre-SFT twin
    assert stage_by_name("modifiers").inputs(cfg)["train"] == "/d/train.parquet"
    assert "failures" not in stage_by_name("modifiers").inputs(cfg)  # the user's data alone
    assert stage_by_name("generate").inputs(cfg) == {"data": "curate.val"}  # endpoint: no model input


def test_train_base_command_also_scores_the_base():
    args = build_parser().parse_args(["train", "base"])
    assert args.only == ["train_base", "eval_base"]
    assert build_parser().parse_args(["judge"]).only == ["judge"]
