"""Thumbs on served answers: an up and a down on two answers to the same conversation are a
preference, and become the served source's pairwise label (with the project's consent)."""

from __future__ import annotations

import pytest
from django.test import Client

from annotation.models import Label
from models_registry.serving.models import ServedFeedback
from models_registry.serving.services import serving_settings_update

from .test_serving import (  # noqa: F401 (fixtures)
    champion,
    chat,
    fake_engines,
    key,
    ready_version_ids,
    supervised,
    url,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def thumbs(client, project, key, response_id, rating):
    return client.post(
        url(project, "feedback"), {"response_id": response_id, "rating": rating},
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}",
    )  # fmt: skip


def test_an_up_and_a_down_on_two_answers_to_one_conversation_are_a_preference_label(
    project, key, champion, candidate, supervised
):
    # (before, thumbs were stored and never became a label: "learned" stayed False)
    serving_settings_update(project=project, learn_from_traffic=True)
    supervised(alias="champion")
    supervised(version_id=candidate.pk)
    wait_for(lambda: ready_version_ids(project) == {champion.pk, candidate.pk})
    client = Client()
    prompt = "What should I cook tonight?"
    first = chat(client, project, key, content=prompt).json()
    second = chat(client, project, key, content=prompt, model="tiny-dpo-v1").json()
    other = chat(client, project, key, content="Another question?").json()

    # a lone thumbs is feedback, not a label: there is nothing to compare it with
    down = thumbs(client, project, key, first["id"], "down")
    assert down.json()["learned"] is False
    # nor are two thumbs on different conversations
    assert thumbs(client, project, key, other["id"], "up").json()["learned"] is False
    assert not Label.objects.exists()

    # when the other answer to the same conversation gets a thumbs up
    up = thumbs(client, project, key, second["id"], "up")
    assert up.status_code == 201
    assert up.json()["learned"] is True

    # then one pairwise label prefers it, and both thumbs point at that label
    label = Label.objects.get()
    assert label.annotator.username == "external:served-web-app"
    winner = label.task.items.get(response_id=label.payload["winner"]).response
    assert winner.model_name == candidate.response_model_name
    learned = set(
        ServedFeedback.objects.filter(learned_label=label).values_list(
            "response__response_id", flat=True
        )
    )
    assert learned == {first["id"], second["id"]}

    # and a further thumbs on the same pair does not make a second label
    again = thumbs(client, project, key, first["id"], "down")
    assert again.json()["learned"] is False
    assert Label.objects.count() == 1
