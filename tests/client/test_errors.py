"""Pure tests of the exception tree: hierarchy, fields, pickling, and secrets kept out of messages."""

from __future__ import annotations

import pickle

import pytest

from fusion_stac import errors as E


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, E.ValidationError), (401, E.AuthenticationError), (403, E.PermissionDeniedError),
     (404, E.NotFoundError), (409, E.ConflictError), (422, E.ValidationError), (429, E.RateLimitedError),
     (500, E.ServerError), (503, E.ServerError), (418, E.APIError)],
)
def test_error_for_status(status: int, cls: type[E.APIError]) -> None:
    error = E.error_for_status(status, "boom", path="/organisations/x/data?limit=1", method="GET", request_id="r-1")
    assert type(error) is cls
    assert isinstance(error, E.APIError) and isinstance(error, E.FusionError)
    assert error.status == status and error.path == "/organisations/x/data" and error.request_id == "r-1"
    assert error.message == "boom"
    assert str(error) == f"boom ({status}, GET /organisations/x/data, request id r-1)"


def test_every_error_pickles_with_its_fields() -> None:
    samples: list[E.FusionError] = [
        E.error_for_status(404, "no such data", path="/p", method="GET", request_id="abc"),
        E.RateLimitedError("slow down", retry_after=2.5, status=429, path="/p", method="GET"),
        E.ValidationError("option 'x' (numeric): bad", field="x"),
        E.AmbiguousNameError("data", "Glas", [("1", "Glasgow"), ("2", "Glasgow 2")], path="/p"),
        E.AnalysisError("could not analyse 'a.tif'", data_id="d", files=["a.tif"]),
        E.ExecutionFailedError("failed", execution_id="e", group_id="g", group_index=3, abort_reason="why"),
        E.TransportError("GET /p failed", path="/p", method="GET", attempts=5),
        E.WaitTimeout("too slow", waited=12.0),
    ]
    for error in samples:
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error)
        assert str(again) == str(error)
        assert again.__dict__ == error.__dict__
    assert pickle.loads(pickle.dumps(samples[1])).retry_after == 2.5
    assert pickle.loads(pickle.dumps(samples[3])).candidates == [("1", "Glasgow"), ("2", "Glasgow 2")]


def test_client_side_validation_has_no_status() -> None:
    error = E.ValidationError("input 1 takes GeoJSON", field="input 1")
    assert error.status is None and str(error) == "input 1 takes GeoJSON"
    assert E.ValidationError("bad body", status=422, path="/p", method="POST").status == 422


def test_wait_timeout_is_a_timeout_error() -> None:
    assert isinstance(E.WaitTimeout("x"), TimeoutError)


@pytest.mark.parametrize(
    "text",
    [
        "cannot read https://storage.example.com/b/k?X-Amz-Signature=SECRETSIG&X-Amz-Credential=AKIA",
        "token=SECRETSIG was rejected",
        'echo {"password": "SECRETSIG"}',
        "Authorization: Bearer SECRETSIG",
        "Max retries exceeded with url: /_storage/abc?sig=SECRETSIG (Caused by ...)",
    ],
)
def test_secrets_never_in_messages(text: str) -> None:
    for error in (E.APIError(text, status=500, path="https://h/p?signature=SECRETSIG"),
                  E.TransportError(text, path="https://h/p?signature=SECRETSIG"),
                  E.FusionError(text)):
        assert "SECRETSIG" not in str(error)
        assert "SECRETSIG" not in repr(error)
        assert "SECRETSIG" not in str(pickle.loads(pickle.dumps(error)))


def test_redact_url_keeps_the_path() -> None:
    assert E.redact_url("https://user:pw@h.example.com:8443/a/b?sig=1#frag") == "https://h.example.com:8443/a/b?…"
    assert E.redact_url("http://127.0.0.1/a") == "http://127.0.0.1/a"


def test_ambiguous_name_lists_candidates() -> None:
    error = E.AmbiguousNameError("service", "Demo", [(str(i), f"Demo {i}") for i in range(12)])
    assert "'Demo 0' (id 0)" in str(error) and "and 2 more" in str(error)
    assert len(error.candidates) == 12
