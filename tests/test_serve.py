"""`gradstep serve`: loopback by default, anything else only when asked, with a warning."""

from click.testing import CliRunner

from gradstep import cli


def test_serve_binds_to_loopback_by_default(monkeypatch):
    built = {}

    class FakeServer:
        def __init__(self, command, host, port, title):
            built.update(command=command, host=host, port=port)

        def serve(self):
            built["served"] = True

    monkeypatch.setattr("textual_serve.server.Server", FakeServer)
    done = CliRunner().invoke(cli.main, ["serve", "neuron", "--variant", "fixed"])
    assert done.exit_code == 0, done.output
    assert (built["host"], built["port"], built["served"]) == ("127.0.0.1", 8000, True)
    assert built["command"].endswith("-m gradstep neuron --variant fixed")


def test_real_server_object_keeps_the_address():
    server = cli.build_server("neuron", None, "127.0.0.1", 8123)
    assert (server.host, server.port) == ("127.0.0.1", 8123)


def test_other_addresses_need_public_and_warn(monkeypatch):
    refused = CliRunner().invoke(cli.main, ["serve", "neuron", "--host", "0.0.0.0"])
    assert refused.exit_code == 2 and "not a loopback address" in refused.output
    monkeypatch.setattr(cli, "build_server", lambda *a: type("S", (), {"serve": lambda self: None})())
    allowed = CliRunner().invoke(cli.main, ["serve", "neuron", "--host", "0.0.0.0", "--public"])
    assert allowed.exit_code == 0 and "run Python code on this machine" in allowed.output


def test_loopback_recognised():
    assert cli._is_loopback("127.0.0.1") and cli._is_loopback("::1") and cli._is_loopback("localhost")
    assert not cli._is_loopback("0.0.0.0") and not cli._is_loopback("192.168.1.2")
