"""The client SDK's names are reachable from uws_py without making websockets a dependency of
``import uws_py``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import uws_py
import uws_py.sdk as sdk


def test_every_sdk_name_is_reexported_and_none_clashes():
    assert set(sdk.__all__) == uws_py._SDK_NAMES
    assert not set(uws_py.__all__) & uws_py._SDK_NAMES
    for name in sdk.__all__:
        assert getattr(uws_py, name) is getattr(sdk, name)
    assert "connect" in dir(uws_py)


def test_unknown_attribute_still_raises():
    try:
        uws_py.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("uws_py.no_such_name did not raise")


def test_import_uws_py_works_without_websockets():
    code = textwrap.dedent("""
        import sys
        sys.modules["websockets"] = None  # as if the [client] extra were not installed
        import uws_py
        assert "uws_py.sdk" not in sys.modules
        try:
            uws_py.connect
        except ImportError:
            print("sdk needs websockets")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sdk needs websockets"
