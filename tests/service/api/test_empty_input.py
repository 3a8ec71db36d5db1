"""An empty or white-space-only text: a 422 naming it for /sentiment (a sentiment of nothing would be a
made-up number), the documented empty answer for /tag and /translate, the same for ``text`` and
``texts``, alone or among other texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.bundled import bundled_repository
from tests.service.conftest import serving, settings_for

BLANKS = ["", " ", "\t\n  \r", "\u00a0\u2003\u3000"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    repo: Path = bundled_repository(tmp_path_factory.mktemp("bundled"))
    with serving(settings_for(repo, access_log=False)) as c:
        yield c


@pytest.mark.parametrize("blank", BLANKS)
def test_sentiment_of_a_blank_text_is_a_422_naming_it(client, blank):
    r = client.post("/sentiment", json={"text": blank})
    assert r.status_code == 422
    assert r.json()["error"] == {
        "code": "invalid_input",
        "message": "text is empty or white space only",
        "field": "text",
        "limit": None,
    }
    r = client.post("/sentiment", json={"texts": ["a fine film .", "dull .", blank]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "texts[2]"


def test_sentiment_of_text_with_a_word_is_answered(client):
    for text in ["?", " x ", "\u200b"]:  # a zero-width space is not white space
        assert client.post("/sentiment", json={"text": text}).status_code == 200, text


@pytest.mark.parametrize("blank", BLANKS)
def test_tags_of_a_blank_text_are_empty(client, blank):
    one = client.post("/tag", json={"text": blank})
    assert one.status_code == 200
    assert one.json()["results"] == [{"tokens": [], "entities": []}]
    several = client.post("/tag", json={"texts": ["Angela Merkel visited Paris .", blank]}).json()["results"]
    assert several[1] == {"tokens": [], "entities": []}
    assert several[0]["entities"], "the other text is answered as usual"


@pytest.mark.parametrize("blank", BLANKS)
def test_translation_of_a_blank_text_is_empty_with_score_zero(client, blank):
    one = client.post("/translate", json={"text": blank})
    assert one.status_code == 200
    assert one.json()["results"] == [{"translation": "", "score": 0.0}]
    both = client.post("/translate", json={"texts": [blank, "A dog runs.", blank], "beam_size": 3})
    results = both.json()["results"]
    assert results[0] == results[2] == {"translation": "", "score": 0.0}
    assert results[1]["translation"] and results[1]["score"] < 0
    alone = client.post("/translate", json={"text": "A dog runs.", "beam_size": 3}).json()["results"][0]
    assert results[1] == alone  # a blank neighbour changes nothing
    attention = client.post("/translate", json={"text": blank, "return_attention": True}).json()
    assert attention["results"] == [
        {"translation": "", "score": 0.0, "source_tokens": [], "target_tokens": [], "attention": []}
    ]
