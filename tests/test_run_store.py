"""`nbdboot run` with the local store: FreeDOS under an overlay, during a live deploy and a live restore.

Each boot is a real FreeDOS from a real nbdkit; the guest writes a file with
typed DOS commands and a later boot must find it where the store put it.
"""

from __future__ import annotations

import hashlib
import shutil

from nbdboot.cli import main

PROMPT = "A:\\>"
WRITE_NOTE = "echo written-by-the-guest>NOTE.TXT\\ndir NOTE.TXT\\n"
READ_NOTE = "type NOTE.TXT\\n"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def boot(*argv, keys: str, expect: list[str]) -> int:
    args = ["run", *argv, "--drive", "0x00", "--headless", "--timeout", "60", "--keys", keys]
    for text in expect:
        args += ["--expect", text]
    return main(args)


def test_overlay_keeps_guest_writes_local_and_export_pristine(nbdkit, freedos_img, tmp_path, capsys):
    image = tmp_path / "fd.img"
    shutil.copyfile(freedos_img, image)
    before = sha256(image)
    server = nbdkit("-r", "file", str(image))          # the export is read-only
    overlay = tmp_path / "machine.overlay"

    assert boot(server.uri, "--overlay", str(overlay), keys=WRITE_NOTE,
                expect=[PROMPT, "NOTE     TXT", PROMPT]) == 0
    assert overlay.exists()
    # The same overlay on the next run continues that machine's state.
    assert boot(server.uri, "--overlay", str(overlay), keys=READ_NOTE,
                expect=[PROMPT, "written-by-the-guest"]) == 0
    # Without the overlay the file does not exist: the export never saw the write.
    assert boot(server.uri, keys=READ_NOTE, expect=[PROMPT, "File not found"]) == 0
    assert sha256(image) == before
    capsys.readouterr()


def test_deploy_while_booting_then_target_boots_alone(nbdkit, freedos_img, tmp_path, capsys):
    server = nbdkit("-r", "file", str(freedos_img))
    target = tmp_path / "local-disk.img"

    assert boot(server.uri, "--deploy-to", str(target), keys=WRITE_NOTE,
                expect=[PROMPT, "NOTE     TXT", PROMPT]) == 0
    err = capsys.readouterr().err
    assert "nbdboot: copy" in err and "written by the guest" in err
    # Finish the copy if the boot ended first (it resumes from the map), then boot the target alone.
    assert main(["deploy", server.uri, str(target), "-q"]) == 0
    server.stop()
    assert target.stat().st_size == freedos_img.stat().st_size
    assert boot("--image", str(target), keys=READ_NOTE, expect=[PROMPT, "written-by-the-guest"]) == 0
    capsys.readouterr()


def test_restore_boots_from_backup_and_fills_target(nbdkit, freedos_img, tmp_path, capsys):
    server = nbdkit("-r", "file", str(freedos_img))
    target = tmp_path / "restored.img"
    assert boot("--restore-from", server.uri, "--to", str(target), keys=READ_NOTE,
                expect=[PROMPT, "File not found"]) == 0
    assert main(["restore", server.uri, str(target), "-q"]) == 0
    assert target.read_bytes() == freedos_img.read_bytes()
    capsys.readouterr()


def test_store_options_are_checked(tmp_path, capsys):
    assert main(["run", "nbd://127.0.0.1:1/", "--overlay", "a", "--deploy-to", "b"]) == 2
    assert main(["run", "--restore-from", "nbd://127.0.0.1:1/"]) == 2
    assert main(["run", "nbd://127.0.0.1:1/", "--sync", "periodic"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("nbdboot: error:") == 3
