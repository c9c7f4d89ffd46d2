"""Operator roles and the rights each one grants; a missing right is a refusal naming the role it needs."""

from __future__ import annotations

from enum import StrEnum

from station.errors import InputError, Reason, StationError

UNMANAGED = "unmanaged"  # the role recorded on a station that has no operators yet


class Role(StrEnum):
    OPERATOR = "operator"
    LEAD = "lead"
    ADMIN = "admin"


class Right(StrEnum):
    RUN = "run"
    RETRY = "retry"
    SCAN = "scan"
    REPRINT = "reprint"
    OVERRIDE = "override a failed check"
    CHANGE_PROFILE = "change the profile or bundle"
    RELEASE = "release firmware"
    UPLOAD = "upload firmware to the console"
    LOCK = "lock a device"
    UNLOCK = "unlock a device"
    ALLOW_DOWNGRADE = "allow a downgrade"
    SYNC = "sync to the console"
    MANAGE_OPERATORS = "manage operators"


_OPERATOR = frozenset({Right.RUN, Right.RETRY, Right.SCAN, Right.REPRINT, Right.SYNC})
_LEAD = _OPERATOR | {
    Right.OVERRIDE,
    Right.CHANGE_PROFILE,
    Right.RELEASE,
    Right.UPLOAD,
    Right.LOCK,
    Right.UNLOCK,
    Right.ALLOW_DOWNGRADE,
}
RIGHTS: dict[Role, frozenset[Right]] = {
    Role.OPERATOR: _OPERATOR,
    Role.LEAD: frozenset(_LEAD),
    # An admin manages operators and can do what a lead does (an admin is usually the line's engineer).
    Role.ADMIN: frozenset(_LEAD | {Right.MANAGE_OPERATORS}),
}


class AccessDenied(StationError):
    """The signed-in operator's role lacks the right an action needs."""

    exit_code = 2
    reason = Reason.PERMISSION


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise InputError(f"unknown role {text!r}", hint="operator, lead or admin") from None


def least_role_for(right: Right) -> Role:
    return next(role for role in Role if right in RIGHTS[role])


def allows(role: str, right: Right) -> bool:
    if role == UNMANAGED:
        return True  # no operators registered yet: the station does not check roles (see README)
    return right in RIGHTS.get(Role(role), frozenset())


def require(name: str, role: str, right: Right) -> None:
    if not allows(role, right):
        need = least_role_for(right)
        raise AccessDenied(
            f"{name} ({role}) may not {right.value}: that needs the {need.value} role",
            hint=f"ask a {need.value} to sign in for it",
        )
