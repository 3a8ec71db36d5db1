"""What the load test expects of the service: the endpoint mix, which endpoints a server serves, and the
shape of every answer.

Standard library only, and no locust import, so unit tests can use it without gevent's monkey-patching
and the locust container image can load it beside ``locustfile.py``. A wrong answer is a failure just
like a non-2xx: each ``check_*`` returns the list of problems of one answer (empty when it is right).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Problems = list[str]
Check = Callable[[Mapping[str, Any], Any, frozenset[str]], Problems]

FINISH_REASONS = frozenset({"length", "stop"})
SCORE_SUM_TOLERANCE = 1e-3


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_probability(value: Any) -> bool:
    return _is_number(value) and -1e-6 <= value <= 1 + 1e-6


def _texts_of(request: Mapping[str, Any]) -> list[str]:
    return [request["text"]] if "text" in request else list(request["texts"])


def _common(body: Any, models: frozenset[str], keys: Sequence[str]) -> Problems:
    if not isinstance(body, dict):
        return [f"answer is {type(body).__name__}, not an object"]
    missing = [k for k in keys if k not in body]
    if missing:
        return [f"answer lacks {missing}"]
    model = body["model"]
    if not isinstance(model, str) or not model:
        return [f"model is {model!r}, not a model name"]
    if models and model not in models:
        return [f"model {model!r} is not one of the served models {sorted(models)}"]
    return []


def _results(request: Mapping[str, Any], body: dict[str, Any]) -> tuple[list[str], list[Any], Problems]:
    texts, results = _texts_of(request), body["results"]
    if not isinstance(results, list):
        return texts, [], [f"results is {type(results).__name__}, not a list"]
    if len(results) != len(texts):
        return texts, [], [f"{len(results)} results for {len(texts)} texts"]
    bad = [i for i, r in enumerate(results) if not isinstance(r, dict)]
    return texts, results, [f"results[{i}] is not an object" for i in bad]


def check_sentiment(request: Mapping[str, Any], body: Any, models: frozenset[str] = frozenset()) -> Problems:
    """One result per text: ``scores`` is a distribution, ``label`` its arg-max and ``score`` its value."""
    problems = _common(body, models, ("model", "results"))
    if problems:
        return problems
    _, results, problems = _results(request, body)
    for i, result in enumerate(results):
        label, score, scores = result.get("label"), result.get("score"), result.get("scores")
        where = f"results[{i}]"
        if not isinstance(label, str) or not label:
            problems.append(f"{where}.label is {label!r}")
        if not _is_probability(score):
            problems.append(f"{where}.score is {score!r}, not a probability")
        if not isinstance(scores, dict) or not scores:
            problems.append(f"{where}.scores is {scores!r}, not a label -> probability object")
            continue
        if not all(isinstance(k, str) and _is_probability(v) for k, v in scores.items()):
            problems.append(f"{where}.scores has a value that is not a probability: {scores}")
            continue
        if abs(sum(scores.values()) - 1.0) > SCORE_SUM_TOLERANCE:
            problems.append(f"{where}.scores sum to {sum(scores.values())}, not 1")
        if isinstance(label, str) and label not in scores:
            problems.append(f"{where}.label {label!r} is not among scores {sorted(scores)}")
        elif _is_number(score) and (abs(scores[label] - score) > 1e-6 or score < max(scores.values()) - 1e-6):
            problems.append(f"{where}: label {label!r} (score {score}) is not the arg-max of {scores}")
    return problems


def _check_span(item: Any, text: str, where: str, fields: Sequence[str]) -> Problems:
    if not isinstance(item, dict) or any(f not in item for f in fields):
        return [f"{where} is {item!r}, expected keys {list(fields)}"]
    start, end = item["start"], item["end"]
    if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start < end <= len(text):
        return [f"{where} has offsets {start!r}:{end!r} outside the {len(text)}-character input"]
    if text[start:end] != item["text"]:
        return [f"{where}.text {item['text']!r} != input[{start}:{end}] {text[start:end]!r}"]
    return []


def check_tag(request: Mapping[str, Any], body: Any, models: frozenset[str] = frozenset()) -> Problems:
    """Tokens cover the input in order with offsets into it; entities are token-aligned scored spans."""
    problems = _common(body, models, ("model", "results"))
    if problems:
        return problems
    texts, results, problems = _results(request, body)
    for i, (text, result) in enumerate(zip(texts, results, strict=False)):
        tokens, entities = result.get("tokens"), result.get("entities")
        if not isinstance(tokens, list) or not isinstance(entities, list):
            problems.append(f"results[{i}] needs lists 'tokens' and 'entities'")
            continue
        if text.strip() and not tokens:
            problems.append(f"results[{i}] has no tokens for a non-empty text")
        previous_end = 0
        for j, token in enumerate(tokens):
            where = f"results[{i}].tokens[{j}]"
            span = _check_span(token, text, where, ("text", "start", "end", "tag"))
            if span:
                problems += span
                continue
            if token["start"] < previous_end:
                problems.append(f"{where} starts at {token['start']}, before the previous token ends")
            if not isinstance(token["tag"], str) or not token["tag"]:
                problems.append(f"{where}.tag is {token['tag']!r}")
            previous_end = token["end"]
        starts = {t["start"] for t in tokens if isinstance(t, dict) and "start" in t}
        ends = {t["end"] for t in tokens if isinstance(t, dict) and "end" in t}
        for j, entity in enumerate(entities):
            where = f"results[{i}].entities[{j}]"
            span = _check_span(entity, text, where, ("text", "label", "start", "end", "score"))
            if span:
                problems += span
                continue
            if entity["start"] not in starts or entity["end"] not in ends:
                problems.append(
                    f"{where} {entity['start']}:{entity['end']} is not aligned to token boundaries"
                )
            if not isinstance(entity["label"], str) or not entity["label"]:
                problems.append(f"{where}.label is {entity['label']!r}")
            if not _is_probability(entity["score"]):
                problems.append(f"{where}.score is {entity['score']!r}, not a probability")
    return problems


def check_translate(request: Mapping[str, Any], body: Any, models: frozenset[str] = frozenset()) -> Problems:
    """One translation per text, with a finite score."""
    problems = _common(body, models, ("model", "results"))
    if problems:
        return problems
    texts, results, problems = _results(request, body)
    for i, (text, result) in enumerate(zip(texts, results, strict=False)):
        translation, score = result.get("translation"), result.get("score")
        if not isinstance(translation, str):
            problems.append(f"results[{i}].translation is {translation!r}, not a string")
        elif text.strip() and not translation.strip():
            problems.append(f"results[{i}].translation is empty for a non-empty text")
        if not _is_number(score):
            problems.append(f"results[{i}].score is {score!r}, not a finite number")
    return problems


def check_generate(request: Mapping[str, Any], body: Any, models: frozenset[str] = frozenset()) -> Problems:
    """Generated text, a known finish reason, and a character count within ``max_new_tokens``."""
    problems = _common(body, models, ("model", "text", "finish_reason", "tokens"))
    if problems:
        return problems
    text, reason, tokens = body["text"], body["finish_reason"], body["tokens"]
    limit = request.get("max_new_tokens")
    if not isinstance(text, str):
        problems.append(f"text is {text!r}, not a string")
    if reason not in FINISH_REASONS:
        problems.append(f"finish_reason is {reason!r}, not one of {sorted(FINISH_REASONS)}")
    count = len(tokens) if isinstance(tokens, list) else tokens
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        problems.append(f"tokens is {tokens!r}, not a token count")
    else:
        if isinstance(text, str) and len(text) != count:
            problems.append(f"tokens={count} but the text has {len(text)} characters (character-level)")
        if isinstance(limit, int) and count > limit:
            problems.append(f"{count} tokens generated, more than max_new_tokens={limit}")
        if isinstance(limit, int) and reason == "length" and count != limit:
            problems.append(f"finish_reason 'length' after {count} of {limit} tokens")
    if reason == "stop" and not request.get("stop"):
        problems.append("finish_reason 'stop' but the request has no stop sequence")
    return problems


@dataclass(frozen=True)
class Endpoint:
    """One entry of the mix: its path, its share of the users, and how to check an answer."""

    path: str
    weight: int
    check: Check


# The endpoint mix: sentiment 50 %, tag 25 %, translate 15 %, generate 10 % (of the served ones).
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/sentiment", 50, check_sentiment),
    Endpoint("/tag", 25, check_tag),
    Endpoint("/translate", 15, check_translate),
    Endpoint("/generate", 10, check_generate),
)


def served_endpoints(
    openapi: Mapping[str, Any], models: Sequence[Mapping[str, Any]]
) -> dict[str, frozenset[str]]:
    """Endpoint path -> names of the ready models behind it, for every mix endpoint the server serves.

    An endpoint is served when the OpenAPI document routes ``POST <path>`` and a ready model exists for
    the task named by the route's tag (the service tags every task router with its task name). A route
    with no tag is kept with an empty model set, so its answers still count (and fail if nothing serves it).
    """
    ready: dict[str, set[str]] = {}
    for model in models:
        if model.get("state") == "ready" and model.get("task"):
            ready.setdefault(model["task"], set()).add(model["name"])
    served: dict[str, frozenset[str]] = {}
    paths = openapi.get("paths", {})
    for endpoint in ENDPOINTS:
        operation = paths.get(endpoint.path, {}).get("post")
        if operation is None:
            continue
        tags = operation.get("tags") or []
        if not tags:
            served[endpoint.path] = frozenset()
            continue
        names = set().union(*(ready.get(tag, set()) for tag in tags))
        if names:
            served[endpoint.path] = frozenset(names)
    return served
