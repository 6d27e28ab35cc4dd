"""The production-shaped deployment description stays consistent with the code."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_health_checks():
    services = compose()["services"]
    assert {"postgres", "opensearch", "api", "worker"} <= services.keys()
    for name in ("postgres", "opensearch", "api", "worker"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert services["api"]["command"][:2] == ["failcat", "serve"]
    assert services["worker"]["command"] == ["failcat", "worker"]


def test_api_and_worker_get_valid_database_and_search_urls():
    services = compose()["services"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        db_url = env["FAILCAT_DATABASE_URL"].replace("${POSTGRES_PASSWORD:-failcat}", "pw")
        settings = Settings(
            database_url=db_url, search_url=env["FAILCAT_SEARCH_URL"], env=env["FAILCAT_ENV"]
        )
        assert settings.catalog_url.startswith("postgresql+asyncpg://")
        assert "@postgres:5432/" in settings.catalog_url
        assert settings.search_url == "http://opensearch:9200"
        deps = services[name]["depends_on"]
        assert deps["opensearch"]["condition"] == "service_healthy"


def test_image_builds_the_console_script_that_compose_runs():
    dockerfile = (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    assert "pip install" in dockerfile and 'CMD ["failcat", "serve"' in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'failcat = "services.gateway.cli:main"' in pyproject
