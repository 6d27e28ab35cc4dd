"""The minimal HTML of the sign-in and device pages. Every value is escaped; no scripts."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from fastapi.responses import HTMLResponse

from services.auth import protocol
from shared.security import Scope

# No framing (clickjacking of the Allow button), no caching of a page holding a CSRF token,
# no referrer leaking the authorization request. form-action is deliberately absent: browsers
# apply it to the redirect back to the client, which is on another origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
    "label{display:block;margin:.6rem 0 .2rem}input[type=text],input[type=password]"
    "{width:100%;padding:.4rem;box-sizing:border-box}"  # the padding inside the width
    "button{margin:1rem .5rem 0 0;padding:.4rem 1rem}"
    ".error{color:#a00}code{background:#eee;padding:0 .2rem}"
)


# What each scope lets the client do, in words, for the consent page: a person deciding
# whether to allow cannot be expected to know what `exports:create` means.
SCOPE_DESCRIPTIONS: dict[str, str] = {
    Scope.CASES_READ: "Read and search the failure cases you may see",
    Scope.CASES_WRITE: "Create, edit, triage and merge failure cases",
    Scope.CASES_INGEST: "Import failure cases in bulk",
    Scope.ANNOTATIONS_WRITE: "Annotate cases (failure mode, severity and other labels)",
    Scope.REVIEWS_WRITE: "Review and settle annotations, and decide in review sessions",
    Scope.PLANS_READ: "Read evaluation and retraining plans",
    Scope.PLANS_WRITE: "Create and change evaluation and retraining plans",
    Scope.EVALS_WRITE: "Record evaluation runs of models on test suites",
    Scope.EXPORTS_CREATE: "Export cases and download shared bundles of them",
    Scope.AUDIT_READ: "Read the audit log (who did what)",
    Scope.ADMIN: "Administer failcat: clients, users, signing keys, and everything above",
}


def _scope_item(scope: str) -> str:
    words = SCOPE_DESCRIPTIONS.get(scope)
    code = f"<code>{escape(scope)}</code>"
    return f"<li>{escape(words)} ({code})</li>" if words else f"<li>{code}</li>"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<meta name=viewport content='width=device-width'><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _hidden(params: Iterable[tuple[str, str]]) -> str:
    return "".join(f"<input type=hidden name='{escape(k)}' value='{escape(v)}'>" for k, v in params)


def _credentials() -> str:
    return (
        "<label for=username>Username</label>"
        "<input type=text id=username name=username autocomplete=username required>"
        "<label for=password>Password</label>"
        "<input type=password id=password name=password autocomplete=current-password required>"
    )


def login_page(
    client_name: str,
    scopes: list[str],
    params: list[tuple[str, str]],
    csrf: str,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    scope_list = "".join(_scope_item(s) for s in scopes)
    err = f"<p class=error>{escape(error)}</p>" if error else ""
    body = (
        f"<p><strong>{escape(client_name)}</strong> asks to act on your behalf with:</p>"
        f"<ul>{scope_list}</ul>"
        # A client that names no scope asks for all of its own (the web pages: admin too);
        # the token gets only those the person holds, and a named one they lack is refused.
        "<p>It never gets more than your own account may do.</p>"
        f"{err}"
        f"<form method=post action='{protocol.AUTHORIZE}'>{_hidden(params)}"
        f"<input type=hidden name=csrf_token value='{escape(csrf)}'>{_credentials()}"
        "<button name=decision value=allow>Sign in and allow</button>"
        "<button name=decision value=deny formnovalidate>Deny</button></form>"
    )
    return _page("Sign in to failcat", body, status)


def device_page(
    user_code: str, csrf: str, error: str | None = None, status: int = 200
) -> HTMLResponse:
    err = f"<p class=error>{escape(error)}</p>" if error else ""
    body = (
        "<p>Enter the code shown by your terminal, then sign in to approve it.</p>"
        f"{err}<form method=post action='{protocol.DEVICE}'>"
        f"<input type=hidden name=csrf_token value='{escape(csrf)}'>"
        "<label for=user_code>Code</label>"
        f"<input type=text id=user_code name=user_code value='{escape(user_code)}' required>"
        f"{_credentials()}"
        "<button name=decision value=allow>Approve</button>"
        "<button name=decision value=deny formnovalidate>Deny</button></form>"
    )
    return _page("Approve a device", body, status)


def message_page(title: str, message: str, status: int = 200) -> HTMLResponse:
    return _page(title, f"<p>{escape(message)}</p>", status)
