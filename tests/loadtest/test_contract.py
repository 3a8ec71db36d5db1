"""The load test's answer checks: right answers pass, each kind of wrong answer is caught."""

from __future__ import annotations

import copy

import pytest

from loadtest.contract import (
    ENDPOINTS,
    check_generate,
    check_sentiment,
    check_tag,
    check_translate,
    served_endpoints,
)

MODELS = frozenset({"sentiment-gru"})


def sentiment_answer() -> dict:
    return {
        "model": "sentiment-gru",
        "results": [
            {"label": "positive", "score": 0.9, "scores": {"negative": 0.1, "positive": 0.9}},
            {"label": "negative", "score": 0.7, "scores": {"negative": 0.7, "positive": 0.3}},
        ],
    }


SENTIMENT_REQUEST = {"texts": ["a fine film .", "dull ."]}


def test_sentiment_right_answer_passes() -> None:
    assert check_sentiment(SENTIMENT_REQUEST, sentiment_answer(), MODELS) == []
    one = sentiment_answer()
    one["results"] = one["results"][:1]
    assert check_sentiment({"text": "a fine film ."}, one) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda a: a.pop("results"), "lacks"),
        (lambda a: a.update(model="other"), "not one of the served models"),
        (lambda a: a["results"].pop(), "1 results for 2 texts"),
        (lambda a: a["results"][0].update(label="negative"), "arg-max"),
        (lambda a: a["results"][0].update(score=1.5), "not a probability"),
        (lambda a: a["results"][0].update(score=True), "not a probability"),
        (lambda a: a["results"][0].update(score=float("nan")), "not a probability"),
        (lambda a: a["results"][0]["scores"].update(positive=0.5), "sum to"),
        (lambda a: a["results"][0].update(label="neutral"), "not among scores"),
        (lambda a: a["results"][0].update(scores={}), "label -> probability"),
        (lambda a: a.update(results="positive"), "not a list"),
    ],
)
def test_sentiment_wrong_answers_fail(mutate, expected: str) -> None:
    answer = sentiment_answer()
    mutate(answer)
    problems = check_sentiment(SENTIMENT_REQUEST, answer, MODELS)
    assert any(expected in p for p in problems), problems


def test_answer_that_is_not_an_object_fails() -> None:
    for check in (check_sentiment, check_tag, check_translate, check_generate):
        assert check({"text": "x"}, ["not", "an", "object"], frozenset()) != []


TAG_TEXT = "EU rejects German call"


def tag_answer() -> dict:
    tokens = [
        {"text": "EU", "start": 0, "end": 2, "tag": "B-ORG"},
        {"text": "rejects", "start": 3, "end": 10, "tag": "O"},
        {"text": "German", "start": 11, "end": 17, "tag": "B-MISC"},
        {"text": "call", "start": 18, "end": 22, "tag": "O"},
    ]
    entities = [
        {"text": "EU", "label": "ORG", "start": 0, "end": 2, "score": 0.98},
        {"text": "German", "label": "MISC", "start": 11, "end": 17, "score": 0.9},
    ]
    return {"model": "ner-bilstm", "results": [{"tokens": tokens, "entities": entities}]}


def test_tag_right_answer_passes() -> None:
    assert check_tag({"text": TAG_TEXT}, tag_answer()) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["tokens"][1].update(start=4), "!= input"),
        (lambda r: r["tokens"][3].update(end=99), "outside"),
        (lambda r: r["tokens"].reverse(), "before the previous token ends"),
        (lambda r: r["tokens"][0].update(tag=""), "tag is"),
        (lambda r: r["entities"][0].update(text="EX"), "!= input"),
        (lambda r: r["entities"][1].update(start=12, text="erman"), "token boundaries"),
        (lambda r: r["entities"][1].update(score=2), "not a probability"),
        (lambda r: r["entities"][1].pop("label"), "expected keys"),
        (lambda r: r.update(tokens=[]), "no tokens"),
        (lambda r: r.pop("entities"), "needs lists"),
    ],
)
def test_tag_wrong_answers_fail(mutate, expected: str) -> None:
    answer = tag_answer()
    mutate(answer["results"][0])
    problems = check_tag({"text": TAG_TEXT}, answer)
    assert any(expected in p for p in problems), problems


def test_translate_checks() -> None:
    answer = {"model": "mt", "results": [{"translation": "Un chien court.", "score": -3.2}]}
    assert check_translate({"text": "A dog runs."}, answer) == []
    for mutate, expected in [
        (lambda r: r.update(translation=None), "not a string"),
        (lambda r: r.update(translation="  "), "empty"),
        (lambda r: r.update(score="high"), "finite number"),
        (lambda r: r.update(score=float("-inf")), "finite number"),
    ]:
        wrong = copy.deepcopy(answer)
        mutate(wrong["results"][0])
        problems = check_translate({"text": "A dog runs."}, wrong)
        assert any(expected in p for p in problems), problems


def test_generate_checks() -> None:
    request = {"prompt": "ROMEO:", "max_new_tokens": 8}
    right = {"model": "char-lstm", "text": "\nWhat, h", "finish_reason": "length", "tokens": 8}
    assert check_generate(request, right) == []
    stopped = {**right, "text": "\nW\n", "finish_reason": "stop", "tokens": 3}
    assert check_generate({**request, "stop": ["\n"]}, stopped) == []
    for wrong, expected in [
        ({**right, "text": "\nWhat, ho", "tokens": 9}, "more than max_new_tokens"),
        ({**right, "text": "\nWhat", "tokens": 5}, "'length' after 5 of 8"),
        ({**right, "tokens": 7}, "the text has 8 characters"),
        (stopped, "no stop sequence"),
        ({**right, "finish_reason": "tired"}, "finish_reason"),
        ({**right, "tokens": -1}, "token count"),
        ({**right, "text": 7}, "not a string"),
        ({k: v for k, v in right.items() if k != "finish_reason"}, "lacks"),
    ]:
        problems = check_generate(request, wrong)
        assert any(expected in p for p in problems), (wrong, problems)


def test_mix_weights_match_the_issue() -> None:
    weights = {e.path: e.weight for e in ENDPOINTS}
    assert weights == {"/sentiment": 50, "/tag": 25, "/translate": 15, "/generate": 10}


def test_served_endpoints_needs_a_route_and_a_ready_model() -> None:
    openapi = {
        "paths": {
            "/sentiment": {"post": {"tags": ["sentiment"]}},
            "/generate": {"post": {"tags": ["generation"]}},
            "/translate": {"post": {"tags": ["translation"]}},
            "/health": {"get": {"tags": ["health"]}},
        }
    }
    models = [
        {"name": "sentiment-gru", "task": "sentiment", "state": "ready"},
        {"name": "sentiment-lstm", "task": "sentiment", "state": "failed"},
        {"name": "char-lstm", "task": "generation", "state": "ready"},
        {"name": "mt", "task": "translation", "state": "loading"},
        {"name": "ner", "task": "ner", "state": "ready"},  # ready, but no /tag route
    ]
    assert served_endpoints(openapi, models) == {
        "/sentiment": frozenset({"sentiment-gru"}),
        "/generate": frozenset({"char-lstm"}),
    }
    untagged = {"paths": {"/tag": {"post": {}}}}
    assert served_endpoints(untagged, []) == {"/tag": frozenset()}
