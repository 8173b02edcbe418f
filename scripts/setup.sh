#!/usr/bin/env bash
# Installs what dsmopt needs on a Debian/Ubuntu machine, only what is missing.
# Usage: scripts/setup.sh [--test]   (--test adds what the test suite needs)
set -euo pipefail

# proj-data: PROJ's EGM96 geoid grid (egm96_15.gtx) for --vertical-datum egm96 and reference DEMs on the geoid.
# libjs-leaflet: the web portal's map library, served by the daemon (nothing is fetched from a CDN).
packages=(pkg-config libgdal-dev libopenblas-dev liblapacke-dev libsqlite3-dev zlib1g-dev proj-data libjs-leaflet)
if [[ "${1:-}" == "--test" ]]; then
    # gdal-bin and python3-gdal/numpy run ../shared/tools (dsm_compare.py, disp_eval.py).
    # postgresql: the private cluster the PostgreSQL store's tests run against (scripts/pg-cluster.sh).
    packages+=(gdal-bin python3-gdal python3-numpy python3-yaml postgresql postgresql-client)
    # The portal's browser test: Chromium and its WebDriver, Selenium in a virtual environment (below).
    packages+=(chromium chromium-driver python3-venv)
    # nginx: the reverse proxy (under a path prefix) the service's and the portal's proxy tests run behind,
    # started by the tests as this user from a folder of their own (Tests/ServiceTests/ReverseProxy.swift).
    packages+=(nginx-light)
    # openssl: the mail test's certificate for its SMTP server's TLS (Tests/ServiceTests/MailTests.swift).
    packages+=(openssl)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
        [[ -x "$d/swift" ]] && export PATH="$d:$PATH"
    done
fi
if ! command -v swift >/dev/null 2>&1; then
    echo "setup: a Swift 6.1+ toolchain is required on PATH (https://www.swift.org/install/linux/)" >&2
    exit 1
fi

if [[ "${1:-}" == "--test" ]]; then
    # From PyPI, in .build/portal-venv (created once): Selenium for Tests/Portal/portal_browser.py, Schemathesis
    # for the OpenAPI contract test (Tests/API/schemathesis.toml), stac-validator for the STAC items and
    # collection (Tests/STAC/validate.sh, with the schemas kept in Tests/STAC/schemas), aiosmtpd for the SMTP
    # server the mail test sends to.
    venv=.build/portal-venv
    if ! "$venv/bin/python" -c "import selenium, schemathesis, stac_validator, aiosmtpd" >/dev/null 2>&1; then
        echo "setup: creating $venv with selenium, schemathesis, stac-validator and aiosmtpd" >&2
        mkdir -p .build
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "selenium>=4.20,<5" "schemathesis>=4.3,<5" "stac-validator>=3.4,<4.2" "aiosmtpd>=1.4,<2"
    fi
fi
