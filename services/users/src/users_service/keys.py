"""The key set access tokens are signed with, and its command line.

    python -m users_service.keys show      # the public key set, as /.well-known/jwks.json serves it
    python -m users_service.keys rotate    # a new signing key first, the previous one kept
    python -m users_service.keys publish   # a new key published, not signing yet (older ones go)
    python -m users_service.keys promote   # the published key signs, the previous one kept

One replica: `rotate`. Several: `publish`, roll the file out to every replica, then `promote`
and roll it out again, so that no replica signs with a key another does not publish yet.

The file is `USERS_SIGNING_KEYS_FILE` (default `./var/signing-keys.json`).
"""

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from servicekit.auth import SigningKey, SigningKeys
from users_service.settings import UsersSettings

logger = logging.getLogger("users_service.keys")


class MissingSigningKeys(RuntimeError):
    """The key file is absent outside development, where generating one would be wrong."""


def load_signing_keys(settings: UsersSettings) -> SigningKeys:
    """The configured key set; in development, one generated on first use (mode 0600).

    Elsewhere every replica must sign with the same keys, so a replica that generated its
    own would issue tokens the others' published keys do not verify: refuse instead.
    """
    path = settings.signing_keys_file
    if path.exists():
        return SigningKeys.load(path)
    if settings.environment != "development":
        raise MissingSigningKeys(
            f"the signing key file {path} does not exist; create it with "
            "`python -m users_service.keys rotate` and set USERS_SIGNING_KEYS_FILE"
        )
    keys = SigningKeys((SigningKey.generate(),)).write_unless_exists(path)
    logger.warning("signing with the key set generated at %s", path)
    return keys


def rotate(settings: UsersSettings) -> SigningKeys:
    """Put a new signing key first and keep the previous one, so its tokens still verify."""
    path = settings.signing_keys_file
    keys = (
        SigningKeys.load(path).rotated() if path.exists() else SigningKeys((SigningKey.generate(),))
    )
    keys.write(path)
    return keys


def publish(settings: UsersSettings) -> SigningKeys:
    """Publish a new key beside the one that signs, which goes on signing."""
    keys = SigningKeys.load(settings.signing_keys_file).with_new_key_published()
    keys.write(settings.signing_keys_file)
    return keys


def promote(settings: UsersSettings) -> SigningKeys:
    """Sign with the key `publish` added; the one that signed until now stays published."""
    keys = SigningKeys.load(settings.signing_keys_file).promoted()
    keys.write(settings.signing_keys_file)
    return keys


COMMANDS = {"rotate": rotate, "publish": publish, "promote": promote}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m users_service.keys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("show", *COMMANDS))
    arguments = parser.parse_args(argv)
    settings = UsersSettings()
    if arguments.command in COMMANDS:
        try:
            keys = COMMANDS[arguments.command](settings)
        except (FileNotFoundError, ValueError) as exc:
            print(f"{settings.signing_keys_file}: {exc}", file=sys.stderr)
            return 1
        print(f"{settings.signing_keys_file}: signing with {keys.current.key_id}", file=sys.stderr)
    else:
        try:
            keys = SigningKeys.load(settings.signing_keys_file)
        except FileNotFoundError:
            print(f"{settings.signing_keys_file} does not exist", file=sys.stderr)
            return 1
    print(json.dumps(keys.public_jwks(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
