"""The owner's directory, the command line and the channel's allowlist, without processes."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from ppdl_nb.workers.transport.chan_socket import Allowlist
from ppdl_nb.workers.transport.keys import KeyPair
from ppdl_nb.workers.transport.served_cli import main
from ppdl_nb.workers.transport.served_client import parse_address
from ppdl_nb.workers.transport.served_state import OwnerState, load_table, parse_fingerprint


def test_the_owner_allows_rotates_and_revokes(tmp_path):
    state = OwnerState(tmp_path / "w")
    a, b = KeyPair.generate(), KeyPair.generate()
    state.allow(a.public_hex, "nb")
    state.allow(b.public_hex, "nb")  # rotation: the label's key is replaced
    assert state.allowed() == {"nb": {"key": b.public_hex, "role": "notebook"}}
    with pytest.raises(ValueError, match="already allowed as 'nb'"):
        state.allow(b.public_hex, "laptop")
    with pytest.raises(ValueError, match="'me' is the notebooks' name"):
        state.allow(a.public_hex, "me", role="peer")
    state.revoke("nb")
    assert state.allowed() == {}
    with pytest.raises(KeyError, match="not allowed here"):
        state.revoke("nb")
    assert stat.S_IMODE(os.stat(state.allowed_path).st_mode) == 0o600


def test_datasets_load_from_csv_and_pt_files_and_bad_ones_are_refused_early(tmp_path):
    (tmp_path / "t.csv").write_text("a,label,b\n1,0,2\n3,1,4\n")
    x, y = load_table(tmp_path / "t.csv", "label")
    torch.testing.assert_close(x, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert y.tolist() == [0, 1] and y.dtype == torch.long
    torch.save({"x": torch.ones(2, 3), "y": torch.zeros(2)}, tmp_path / "t.pt")
    assert load_table(tmp_path / "t.pt")[0].shape == (2, 3)
    state = OwnerState(tmp_path)
    with pytest.raises(ValueError, match="no target column 'nope'"):
        state.add_dataset("t", "t.csv", epsilon=1, delta=1e-5, target="nope")
    torch.save([1, 2], tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="must hold"):
        state.add_dataset("bad", "bad.pt", epsilon=1, delta=1e-5)
    state.add_dataset("t", "t.csv", epsilon=1, delta=1e-5, target="label")
    assert state.datasets()["t"]["epsilon"] == 1.0


def test_the_command_line_says_what_is_wrong(tmp_path, capsys):
    assert main(["allow", "zz", "--name", "nb", "--state-dir", str(tmp_path)]) == 2
    assert "is not a fingerprint" in capsys.readouterr().err
    fp = KeyPair.generate().public_hex
    assert main(["allow", fp, "--name", "bob", "--peer", "--state-dir", str(tmp_path)]) == 0
    assert OwnerState(tmp_path).allowed()["bob"]["role"] == "peer"


def test_addresses_and_fingerprints_are_parsed_strictly():
    assert parse_address("bob@[::1]:7700") == ("bob", "tcp://[::1]:7700")
    for bad in ("bob@host", "7x@h:1", "bob@h:123456"):
        with pytest.raises(ValueError, match="not a served worker's address"):
            parse_address(bad)
    assert parse_fingerprint(" AB" * 32) == bytes([0xAB]) * 32
    with pytest.raises(ValueError, match="is not a fingerprint"):
        parse_fingerprint("ab" * 31)


def test_several_notebooks_share_the_name_me_and_a_revoked_key_is_refused():
    allowlist = Allowlist(KeyPair.generate())
    a, b = KeyPair.generate(), KeyPair.generate()
    allowlist.allow("me", a.public, shared=True)
    allowlist.allow("me", b.public, shared=True)
    assert allowlist.lookup(a.public)[0] == allowlist.lookup(b.public)[0] == "me"
    with pytest.raises(PermissionError):
        allowlist.allow("me", KeyPair.generate().public)  # not shared: the name is fixed
    allowlist.revoke(a.public)
    assert allowlist.lookup(a.public) is None and allowlist.lookup(b.public) is not None


def test_a_hello_of_another_version_or_a_garbled_one_gets_a_refusal_and_the_server_serves():
    import zmq

    from ppdl_nb.workers.transport import chan_wire as wire
    from ppdl_nb.workers.transport.chan_gate import gate_client
    from ppdl_nb.workers.transport.channel import ChannelClient, ChannelServer
    from ppdl_nb.workers.transport.keys import hello_key

    server_keys, nb = KeyPair.generate(), KeyPair.generate()
    with ChannelServer(server_keys, None, lambda f, p: f, {"me": nb.public}) as server:
        ctx = zmq.Context()
        try:
            for version, code in ((b"ppdl-nb/4.0", wire.REFUSED_VERSION),
                                  (b"\xff" * 100_000, wire.REFUSED_VERSION),
                                  (b"ppdl-nb/3.7", None)):  # same major: on to the key check
                s = ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                gate_client(s, hello_key(nb, server_keys.public), nb.public,
                            server_keys.public, "me")  # past the gate: the hello decides
                s.connect(server.endpoint)
                s.send_multipart([wire.prefix(wire.KIND_HELLO, 0), b"me", nb.public,
                                  KeyPair.generate().public, bytes(32), version])
                assert s.poll(5000), "no refusal"
                reply = s.recv_multipart()
                assert reply[0][5:6] == wire.KIND_REFUSED
                assert (reply[2] if len(reply) > 2 else None) == code
                s.close()
        finally:
            ctx.term()
        with ChannelClient(nb, server.endpoint, server_keys.public, "me") as client:
            assert client.request([b"still here"]) == [b"still here"]
