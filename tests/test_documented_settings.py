"""Every documented setting is read by something, and the exchange configuration's
buffer_size reaches the storage sink on each path that runs collectors."""

import re

from collectors.config.files import load_exchange_config_file
from collectors.config.schema import collector_configs
from collectors.hosting.runner import build_sink, sink_buffer_size
from tests.helpers import ROOT

# Read by something other than this project's Python code, which says so.
READ_ELSEWHERE = {
    "DJANGO_SETTINGS_MODULE": "Django and Celery",
    "FLOWER_BASIC_AUTH": "Flower (its FLOWER_ options), and tcp_dashboard/flower.py",
    "POSTGRES_PASSWORD": "docker-compose.yml",
    # An account's credentials: the configuration names the variables (docs/accounts.md).
    "OKX_API_KEY": "the variable an exchange's credentials.api_key_env names",
    "OKX_API_SECRET": "the variable an exchange's credentials.secret_env names",
    "OKX_API_PASSPHRASE": "the variable an exchange's credentials.passphrase_env names",
}


def documented() -> set[str]:
    """The variables .env.example sets or shows, and those the README's table names."""
    names = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration") : readme.index("## Running the parts")]
    names |= set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section, re.M))
    return names


def project_source() -> str:
    files = [
        *ROOT.glob("tcp_dashboard/**/*.py"),
        *ROOT.glob("collectors/**/*.py"),
        *ROOT.glob("marketdata/**/*.py"),
        *ROOT.glob("dashboard/**/*.py"),
    ]
    return "\n".join(path.read_text() for path in files if "migrations" not in path.parts)


def test_every_documented_setting_is_read_by_the_project_or_named_as_read_elsewhere():
    source = project_source()
    compose = (ROOT / "docker-compose.yml").read_text()
    unread = sorted(
        name
        for name in documented()
        if f'"{name}"' not in source and name not in READ_ELSEWHERE and name not in compose
    )
    assert unread == []
    assert "COLLECTOR_MAX_SILENCE_DURATION" not in documented()


def test_the_collect_command_sink_takes_the_largest_buffer_size_of_its_configuration(tmp_path):
    config = load_exchange_config_file(ROOT / "config" / "okx-simulator.json")
    configs = collector_configs(config)
    assert sink_buffer_size(configs) == config.buffer_size == 1000
    bigger = [
        *configs,
        configs[0].__class__(
            "okx", "SOL-USDT", configs[0].data_types, custom_params={"buffer_size": 4000}
        ),
    ]
    sink = build_sink(bigger, name="buffers")
    assert sink.buffer_size == 4000
