"""Each job's signing key: made by the master, kept outside the bucket, handed to attempts privately.

Write access to the bucket must not mean code execution on the master, so the runner signs every
result with a key that only the master's machine (a file in key_dir, mode 0600, one per job) and
the job's attempts (a pipe or the job's Secret) hold; the master verifies before it unpickles anything. A
rerun reads the same file, so it trusts results of earlier runs. Teams that share results across
machines point signing_key_file at one key they distribute themselves; each job then signs with a
key derived from it and the job's URL, so a result does not replay into another storage root.
Key files and key_dir must belong to this user and be private to it. See docs/security.md.
"""

import hashlib
import hmac
import json
import os
import secrets
import stat
import tempfile

from ..errors import SigningKeyError

KEY_BYTES = 32
_NEW_KEY_HINT = "python3 -c 'import secrets; print(secrets.token_hex(32))' > %s && chmod 600 %s"


def _parse(text, path):
    hex_text = "".join(line.strip() for line in text.splitlines() if not line.lstrip().startswith("#"))
    try:
        key = bytes.fromhex(hex_text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise SigningKeyError(
            "signing key file %s does not hold a key (expected at least 32 hex characters): "
            "replace it with a new one (%s)" % (path, _NEW_KEY_HINT % (path, path))
        )
    return key


def job_key(team_key, job_url):
    """The key a job signs with under a team key: bound to the job's full URL, not just its id."""
    return hmac.new(team_key, b"luigi-kubeface job key\n" + job_url.rstrip("/").encode(), hashlib.sha256).digest()


ATTEMPT_SIGNER = "attempt"  # a header's "signer" when an attempt key, not the job's key, signed it


def attempt_key(job_key_bytes, job, element, code_version, attempt):
    """The key one attempt signs its result with, derived before it unpickles anything.

    It signs a result of this element, code version and attempt only (serialization refuses it for
    any other kind or place), so code that reaches it inside the attempt can forge nothing the
    attempt could not return anyway; the job's key itself is wiped first (runner.py).
    """
    scope = json.dumps([job, element, code_version, attempt]).encode()
    return hmac.new(job_key_bytes, b"luigi-kubeface attempt key\n" + scope, hashlib.sha256).digest()


def forget(key):
    """Overwrite a key held in a bytearray (the runner's own copy): every reference to it sees zeros."""
    if isinstance(key, bytearray):
        key[:] = bytes(len(key))


def _check_private_dir(path):
    """key_dir must be this user's and not writable by others, who could swap key files in it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SigningKeyError(
            "key_dir %s is owned by uid %d (this user is %d) or writable by other users (mode %o), who could "
            "replace the keys in it: chown it to this user and chmod 700 %s, or set [kubeface] key_dir to a "
            "private directory" % (path, info.st_uid, os.geteuid(), stat.S_IMODE(info.st_mode), path)
        )


class KeyRing:
    """Where the keys of jobs live on the master's machine."""

    def __init__(self, key_dir="~/.config/luigi-kubeface/keys", signing_key_file=""):
        self.key_dir = os.path.abspath(os.path.expanduser(key_dir))
        self.signing_key_file = os.path.abspath(os.path.expanduser(signing_key_file)) if signing_key_file else ""

    @classmethod
    def from_settings(cls, settings):
        return cls(settings.key_dir, settings.signing_key_file)

    def path(self, job_url):
        """One file per job, named by a digest of its URL (the job id alone may repeat across roots)."""
        if self.signing_key_file:
            return self.signing_key_file
        return os.path.join(self.key_dir, hashlib.sha256(job_url.encode()).hexdigest()[:32] + ".key")

    def load(self, job_url):
        """The job's key; SigningKeyError naming the file and the fix if it is missing or unusable."""
        key = self.stored_key(job_url)
        return job_key(key, job_url) if self.signing_key_file else key

    def stored_key(self, job_url):
        """The key as its file holds it (the team key itself with signing_key_file)."""
        path = self.path(job_url)
        if not self.signing_key_file:
            _check_private_dir(self.key_dir)
        try:
            with open(path) as f:
                info = os.fstat(f.fileno())
                text = f.read()
        except FileNotFoundError:
            if self.signing_key_file:
                raise SigningKeyError(
                    "[kubeface] signing_key_file %s does not exist: copy your team's key there, create one "
                    "(%s), or leave signing_key_file empty to keep one key per job in key_dir"
                    % (path, _NEW_KEY_HINT % (path, path))
                ) from None
            raise SigningKeyError(
                "the signing key of job %s is not on this machine (looked for %s): copy that file from the "
                "machine that ran the job (or set [kubeface] key_dir / signing_key_file to where it is), "
                "or delete the job's results (%s/results/) to recompute them" % (job_url, path, job_url)
            ) from None
        except OSError as error:
            raise SigningKeyError(
                "signing key file %s cannot be read (%s): fix its permissions" % (path, error.strerror or error)
            ) from None
        if info.st_uid != os.geteuid():
            raise SigningKeyError(
                "signing key file %s belongs to uid %d, not to this user (uid %d): another user could have "
                "written it; chown it to this user (and chmod 600), or create a new key (%s)"
                % (path, info.st_uid, os.geteuid(), _NEW_KEY_HINT % (path, path))
            )
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) & ~stat.S_IRGRP:
            raise SigningKeyError(
                "signing key file %s may be written or read by other users (mode %o): chmod 600 %s"
                % (path, stat.S_IMODE(info.st_mode), path)
            )
        return _parse(text, path)

    def env_file(self, job_url, variable):
        """A private file `variable=<job key>` for `docker run --env-file`: the key is never in a command line."""
        key = self.load(job_url)
        path = os.path.join(self.key_dir, hashlib.sha256(job_url.encode()).hexdigest()[:32] + ".env")
        _check_private_dir(self.key_dir)
        os.makedirs(self.key_dir, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.key_dir)  # mode 0600
        with os.fdopen(fd, "w") as f:
            f.write("%s=%s\n" % (variable, key.hex()))
        os.replace(tmp, path)
        return path

    def create(self, job_url):
        """A new random key for the job (mode 0600); if another master made one first, that one is kept."""
        if self.signing_key_file:
            return self.load(job_url)
        path = self.path(job_url)
        _check_private_dir(self.key_dir)
        try:
            os.makedirs(self.key_dir, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.key_dir)  # created with mode 0600
            with os.fdopen(fd, "w") as f:
                f.write("# luigi-kubeface signing key of job %s\n%s\n" % (job_url, secrets.token_hex(KEY_BYTES)))
            try:
                os.link(tmp, path)  # atomic and exclusive: two masters never end with two keys
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        except OSError as error:
            raise SigningKeyError(
                "cannot create the signing key of job %s in %s (%s): set [kubeface] key_dir to a private "
                "directory this user can write" % (job_url, self.key_dir, error.strerror or error)
            ) from None
        return self.load(job_url)
