"""The launch form's sections, which fields apply, and presets (form and API)."""

import re

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from rlhf.models import TrainingRun
from rlhf.runs.pages import form_fields, form_groups
from rlhf.training.config import (
    GROUPS,
    METHODS,
    PRESETS,
    ConfigError,
    config_from_dict,
    config_schema,
    field_applies,
    preset_values,
)


@pytest.mark.parametrize("method", METHODS)
def test_every_field_has_a_known_group_and_essentials_come_first(method):
    schema = config_schema(method)
    known = {key for key, _ in GROUPS}
    assert {f["group"] for f in schema} <= known
    groups = form_groups(form_fields(method, {}, {}))
    assert groups[0]["key"] == "essentials"
    assert sum(len(g["fields"]) for g in groups) == len(schema)
    by_name = {f["name"]: f["group"] for f in schema}
    assert by_name["learning_rate"] == "essentials"
    assert by_name["lora_r"] == "lora"
    assert by_name["deepspeed_zero_stage"] == "precision_devices"
    assert by_name["checkpoint_every_steps"] == "checkpoints"


def test_lora_fields_apply_only_with_lora_and_encoder_length_only_with_an_encoder():
    assert field_applies("lora_r", {"use_lora": True}) is True
    assert field_applies("lora_r", {"use_lora": False}) is False
    assert field_applies("encoder_max_length", {"backbone": "decoder"}) is False
    assert field_applies("max_length", {"backbone": "encoder"}) is False
    # a method without a backbone (DPO): max_length always applies
    assert field_applies("max_length", {"use_lora": True}) is True
    assert field_applies("deepspeed_zero_stage", {"distributed": "fsdp"}) is False
    assert field_applies("deepspeed_zero_stage", {"distributed": "deepspeed"}) is True


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_is_a_valid_config_for_every_method(method, preset):
    values = preset_values(method, preset)
    names = {f["name"] for f in config_schema(method)}
    assert values
    assert set(values) <= names
    models = {"base_model": "/m", "reward_model": "/r"}
    models = {k: v for k, v in models.items() if k in names}
    config = config_from_dict(method, {**models, **values})
    for name, value in values.items():
        assert getattr(config, name) == value


def test_an_unknown_preset_is_refused_naming_the_field():
    with pytest.raises(ConfigError) as refused:
        preset_values("dpo", "turbo")
    assert list(refused.value.errors) == ["preset"]
    assert preset_values("dpo", "") == {}


def test_reward_form_hides_lora_fields_without_lora_and_never_offers_multi_gpu_settings(
    client, engineer, project, snapshot, settings
):
    settings.TANDEM_GPU_PRESENT = False
    client.force_login(engineer)

    html = client.get(reverse("runs:new", args=[project.pk]) + "?method=reward").content.decode()

    for key, _ in GROUPS:
        assert f'data-testid="group-{key}"' in html
    lora = re.search(r'<div class="field" data-field="lora_r"[^>]*>', html).group(0)
    assert " hidden" in lora  # reward models train every weight by default
    use_lora = re.search(r'<div class="field" data-field="use_lora"[^>]*>', html).group(0)
    assert " hidden" not in use_lora
    for name in ("distributed", "num_processes", "deepspeed_zero_stage"):
        assert f'<input type="hidden" name="{name}"' in html
        assert f'data-field="{name}"' not in html
    device = re.search(r'<select name="device">(.*?)</select>', html).group(1)
    assert "cuda" not in device
    assert re.search(r'<option value="small_gpu" disabled>Small GPU \(needs a GPU\)', html)


def test_dpo_form_with_a_gpu_shows_lora_fields_and_offers_cuda(client, engineer, project, settings):
    settings.TANDEM_GPU_PRESENT = True
    client.force_login(engineer)

    html = client.get(reverse("runs:new", args=[project.pk]) + "?method=dpo").content.decode()

    lora = re.search(r'<div class="field" data-field="lora_r"[^>]*>', html).group(0)
    assert " hidden" not in lora
    assert '<option value="cuda">cuda</option>' in re.search(
        r'<select name="device">(.*?)</select>', html
    ).group(0)
    assert '<option value="small_gpu">Small GPU</option>' in html


def test_form_opened_with_a_preset_shows_its_values(client, engineer, project, snapshot):
    client.force_login(engineer)

    html = client.get(
        reverse("runs:new", args=[project.pk]) + "?method=reward&preset=quick_cpu"
    ).content.decode()

    assert 'name="max_steps" value="10"' in html
    assert 'name="per_device_batch_size" value="4"' in html
    assert '<option value="quick_cpu" selected>' in html


def test_api_launch_with_a_preset_takes_its_values_and_explicit_fields_win(
    engineer, project, snapshot, reward_config
):
    api = APIClient()
    api.force_authenticate(engineer)
    config = {k: v for k, v in reward_config.items() if k not in ("max_steps", "max_length")}
    config["per_device_batch_size"] = 2

    launched = api.post(
        f"/api/projects/{project.pk}/runs/",
        {"method": "reward", "snapshot": snapshot.pk, "preset": "quick_cpu", "config": config},
        format="json",
    )

    assert launched.status_code == 202, launched.content
    stored = TrainingRun.objects.get().config
    assert stored["max_steps"] == 10  # the preset's
    assert stored["max_length"] == 256  # the preset's
    assert stored["device"] == "cpu"  # the preset's
    assert stored["per_device_batch_size"] == 2  # explicit beats the preset's 4
    assert stored["checkpoint_every_steps"] == 2  # explicit beats the preset's 0


def test_api_refuses_an_unknown_preset_naming_the_field(engineer, project, snapshot):
    api = APIClient()
    api.force_authenticate(engineer)

    refused = api.post(
        f"/api/projects/{project.pk}/runs/",
        {"method": "reward", "snapshot": snapshot.pk, "preset": "turbo"},
        format="json",
    )

    assert refused.status_code == 400
    assert "preset" in refused.json()
    assert TrainingRun.objects.count() == 0
