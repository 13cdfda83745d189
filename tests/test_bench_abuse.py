"""bench.abuse itself, small: every case runs against a live keyed service,
the JSON carries a peak RSS and thread count per case, and the service
survives. (The bounds themselves are asserted in test_service_limits.)"""
import json

from bench import abuse


def test_abuse_bench_small(tmp_path):
    result = abuse.run(None, tmp_path, connections=24, slow=3,
                       limits=["--frame-timeout", "2", "--handshake-timeout", "2"])
    saved = json.loads((tmp_path / "abuse.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert result["service_alive"]
    names = [c["case"] for c in result["cases"]]
    assert any(n.startswith("pre-auth") for n in names) and any("slowloris" in n for n in names)
    assert any(n.startswith("auth:") for n in names)
    for c in result["cases"]:
        assert c["peak_rss_mib"] > 0 and c["peak_threads"] >= 1
    assert result["cases"][1]["outcome"] == "24/24 closed by the service"
    assert result["cases"][2]["outcome"].startswith("3/3 closed")
    assert "BAD_FRAME on the header" in result["cases"][5]["outcome"]
    assert "slowloris" in abuse.table(result)
