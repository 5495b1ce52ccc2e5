"""Configuration errors say what is wrong and how to write it right (issue #16)."""

from __future__ import annotations

import csv

import pytest

from streamgen.cli import main
from streamgen.config import PipelineConfig, apply_overrides, build_config, load_pipeline
from streamgen.errors import ConfigError


def _set_error(*items: str) -> str:
    with pytest.raises(ConfigError) as exc:
        apply_overrides(PipelineConfig(), list(items))
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("window.lenght=64", "window.lenght: unknown setting (did you mean window.length?)"),
        # a misspelled section, and both levels misspelled
        ("windw.length=64", "windw.length: unknown setting (did you mean window.length?)"),
        ("windw.lenght=64", "windw.lenght: unknown setting (did you mean window.length?)"),
        ("calibrate.treshold=3", "(did you mean calibrate.threshold?)"),
    ],
)
def test_a_misspelled_setting_gets_the_closest_name(item, message):
    assert message in _set_error(item)


def test_an_unknown_name_with_nothing_close_lists_the_valid_ones():
    msg = _set_error("window.zzz=1")
    assert msg.startswith("window.zzz: unknown setting; valid under window: ")
    assert "length" in msg and "stride" in msg and "did you mean" not in msg
    assert "valid at the top level: " in _set_error("zzz=1")
    # a path below a plain setting
    assert "window.length is a setting, not a section" in _set_error("window.length.x=3")
    assert "expected dotted.key=value" in _set_error("=3")


@pytest.mark.parametrize(
    ("item", "example"),
    [
        ("decode.value_fields=temp", "e.g. --set 'decode.value_fields=[temp,humidity]'"),
        ("calibrate.detectors=model", "e.g. --set 'calibrate.detectors=[model,shape]'"),
        ("kafka.topics=sensors", "e.g. --set 'kafka.topics=[sensors,events]'"),
        ("kafka.security=PLAIN", "e.g. --set 'kafka.security={sasl_mechanism: PLAIN"),
    ],
)
def test_list_and_map_settings_show_their_syntax(item, example):
    msg = _set_error(item)
    assert msg.startswith(item.split("=")[0] + ": Input should be a valid ")
    assert example in msg


def test_the_suggested_syntax_works():
    cfg = apply_overrides(
        PipelineConfig(),
        ["decode.value_fields=[temp,humidity]", "calibrate.detectors=[model,shape]",
         "kafka.security={sasl_mechanism: PLAIN, sasl_plain_username: me}"],
    )
    assert cfg.decode.value_fields == ["temp", "humidity"]
    assert cfg.calibrate.detectors == ["model", "shape"]
    assert cfg.kafka.security == {"sasl_mechanism": "PLAIN", "sasl_plain_username": "me"}
    # a free-form map also takes one key at a time, and only one level below it
    cfg = apply_overrides(cfg, ["kafka.security.sasl_mechanism=SCRAM-SHA-256"])
    assert cfg.kafka.security["sasl_mechanism"] == "SCRAM-SHA-256"
    assert cfg.kafka.security["sasl_plain_username"] == "me"
    assert "kafka.security takes KEY=value pairs" in _set_error("kafka.security.a.b=1")


def test_a_misspelled_choice_gets_the_closest_one():
    assert _set_error("model.name=sotta") == (
        "model.name: unknown model 'sotta' (did you mean 'sota'?); models: sota, rvae"
    )
    assert "(did you mean 'model'?)" in _set_error("calibrate.detectors=[modle]")
    assert "did you mean" not in _set_error("model.name=xyz")


def test_other_errors_are_unchanged():
    assert _set_error("window.length=1") == (
        "window.length: Input should be greater than or equal to 2"
    )


def test_pipeline_yaml_errors_get_the_same_hints_in_yaml_syntax(tmp_path):
    with pytest.raises(ConfigError, match=r"^window\.lenght: unknown setting \(did you mean "
                       r"window\.length\?\)$"):
        build_config({"window": {"lenght": 3}})
    with pytest.raises(ConfigError, match=r"^windw: unknown setting \(did you mean window\?\)$"):
        build_config({"windw": {}})
    p = tmp_path / "p.yaml"
    p.write_text("decode:\n  value_fields: temp\n")
    with pytest.raises(ConfigError) as exc:
        load_pipeline(p)
    assert str(exc.value) == (
        "decode.value_fields: Input should be a valid list, e.g. value_fields: [temp, humidity]"
    )


def test_the_command_line_prints_the_hint_and_exits_2(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("timestamp,x\n1,1\n2,2\n")
    rc = main(["score", str(src), "-o", str(tmp_path / "o.csv"), "--set", "window.lenght=64"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == "streamgen: error: window.lenght: unknown setting (did you mean window.length?)"
    assert not (tmp_path / "o.csv").exists()


def _scores(path, label: str) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["key", "timestamp", "score", "calibrated", "label"])
        w.writeheader()
        for i in range(5):
            w.writerow({"key": "a", "timestamp": 1_700_000_000 + i, "score": i,
                        "calibrated": i, "label": label})


def test_an_empty_label_column_is_not_called_missing(tmp_path, capsys):
    # `streamgen score` always writes a label column; it is empty when the input had none
    empty = tmp_path / "empty.csv"
    _scores(empty, "")
    assert main(["evaluate", "--scores", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "the scores' 'label' column is empty" in err and "no 'label' column" not in err
    # a file without the column still says so
    none = tmp_path / "none.csv"
    none.write_text("key,timestamp,score,calibrated\na,1700000000,1,1\n")
    assert main(["evaluate", "--scores", str(none)]) == 2
    assert "the scores have no 'label' column" in capsys.readouterr().err


def test_model_settings_follow_model_name():
    """Each model's settings class validates the model section: a setting of another model
    says which one has it, model.name may come before or after its settings, and switching
    model drops the previous model's own settings."""
    assert _set_error("model.kl_weight=2") == (
        "model.kl_weight: not a setting of model 'sota' (a setting of rvae: set model.name)"
    )
    for order in (["model.kl_weight=2", "model.name=rvae"], ["model.name=rvae", "model.kl_weight=2"]):
        cfg = apply_overrides(PipelineConfig(), order)
        assert (cfg.model.name, cfg.model.kl_weight) == ("rvae", 2.0)
    back = apply_overrides(cfg, ["model.name=sota", "model.hidden=32"])
    assert back.model.name == "sota" and back.model.hidden == 32
    assert not hasattr(back.model, "kl_weight")
    with pytest.raises(ConfigError, match="not a setting of model 'sota'"):
        build_config({"model": {"name": "sota", "free_bits": 0.2}})
    with pytest.raises(ConfigError, match=r"model.hiden: unknown setting \(did you mean model.hidden"):
        build_config({"model": {"name": "rvae", "hiden": 3}})
    with pytest.raises(ConfigError, match="unknown model 'gan'"):
        build_config({"model": {"name": "gan"}})


def test_a_renamed_setting_keeps_working_under_its_old_name():
    assert PipelineConfig().kafka.max_in_flight_requests == 4
    assert apply_overrides(PipelineConfig(), ["kafka.max_in_flight_batches=2"]).kafka \
        .max_in_flight_requests == 2
    assert build_config({"kafka": {"max_in_flight_batches": 3}}).kafka.max_in_flight_requests == 3
    assert not hasattr(PipelineConfig().kafka, "max_in_flight_batches")

