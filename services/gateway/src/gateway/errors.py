from bai_platform.errors import Conflict, Forbidden, Unauthorized


class EmailTaken(Conflict):
    code = "email_taken"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class InvalidToken(Unauthorized):
    code = "invalid_token"


class WrongPassword(Forbidden):
    code = "wrong_password"


class RefreshTokenReused(Unauthorized):
    """A rotated refresh token came back: its whole family is revoked, and that stands."""

    code = "refresh_token_reused"
    keeps_effects = True
