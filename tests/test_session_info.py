"""session_info: what the JupyterLab sidebar reads from a kernel (in-process, and through a real kernel)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import tiny_lab
from workbench.session_info import EXPRESSION, SessionInfo, describe

SRC = Path(__file__).resolve().parents[1] / "labextension" / "src"


@pytest.fixture(scope="module")
def lab():
    lab = tiny_lab()
    lab.new_adapter("a", r=4)
    lab.new_adapter("b", r=2, targets="all-linear", seed=1)
    lab.add_router("s", "smora", r=8, k=2, targets="attention")
    lab.use("a")
    return lab


def test_describe_lists_each_lab_once_with_its_names(lab):
    other = tiny_lab()
    info = describe({"lab": lab, "same": lab, "_": lab, "_3": lab, "other": other, "x": 1})
    assert info["version"] == 1
    assert [s["variables"] for s in info["sessions"]] == [["lab", "same"], ["other"]]
    assert info["sessions"][1]["adapters"] == [] and info["sessions"][1]["routers"] == []
    assert describe({"x": 1}) == {"version": 1, "sessions": []}


def test_adapters_routers_and_base(lab):
    session = describe({"lab": lab})["sessions"][0]
    assert session["active"] == ["a"]
    a, b = session["adapters"]
    assert (a["name"], a["rank"], a["ranks"], a["active"]) == ("a", 4, [4], True)
    assert a["targets"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert a["modules"] == len(lab.adapters["a"].modules) == 2 * 4 and a["layers"] == 2
    assert a["parameters"] == lab.adapters["a"].num_parameters()
    assert a["bytes"] == 4 * a["parameters"]  # float32 factors
    assert a["lineage"] == {"method": "new", "init": "lora", "seed": 0, "targets": "attention"}
    assert a["made_by"] == "new"
    assert (b["name"], b["rank"], b["active"], b["modules"]) == ("b", 2, False, 2 * 7)
    (router,) = session["routers"]
    assert (router["name"], router["mechanism"], router["modules"]) == ("s", "smora", 8)
    assert router["parameters"] == lab.routers["s"].n_parameters() > 0
    # the base's own weights only: adapters and routers are not counted in
    fresh = tiny_lab()
    assert session["base"]["parameters"] == sum(p.numel() for p in fresh.model.parameters())
    assert session["base"]["name"] == "tiny-llama" and session["base"]["fingerprint"] == lab.fingerprint
    json.dumps(session)  # plain JSON all through


def test_lineage_summaries_and_odd_values(lab):
    from workbench.session_info import _summary, adapter_info

    assert _summary({"method": "train_lora", "tasks": ["topic"], "steps": 80}) == \
        "train_lora on topic (80 steps)"
    merged = {"method": "merge", "merge": {"method": "ties", "sources": [{"name": "a"}, {"name": "b"}]}}
    assert _summary(merged) == "ties merge of a, b"
    adapter = lab.adapters["b"].copy("c")
    adapter.lineage["path"] = Path("/tmp/x")  # not JSON: becomes a string
    assert adapter_info(adapter)["lineage"]["path"] == "/tmp/x"


def test_the_sidebar_reads_only_keys_that_describe_gives(lab):
    """tokens.ts mirrors session_info's output: every field it declares exists in a real reply."""
    session = describe({"lab": lab})["sessions"][0]
    tokens = (SRC / "tokens.ts").read_text()

    def fields(interface: str) -> set[str]:
        body = re.search(r"interface " + interface + r" \{(.*?)\n\}", tokens, re.S).group(1)
        body = re.sub(r"/\*\*.*?\*/", "", body, flags=re.S)
        return set(re.findall(r"^\s+(\w+):", body, re.M))

    assert fields("IAdapterInfo") == set(session["adapters"][0])
    assert fields("IRouterInfo") == set(session["routers"][0])
    assert fields("ISessionInfo") == set(session)
    assert set(re.search(r"base: \{([^}]*)\}", tokens).group(1).replace(";", "").split()[::2]) == \
        {f"{k}:" for k in session["base"]}


def test_the_sidebar_sends_this_expression():
    kernel_ts = (SRC / "kernel.ts").read_text()
    declared = re.search(r"export const EXPRESSION =(.*?);\n", kernel_ts, re.S).group(1)
    assert "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', declared)) == EXPRESSION


def test_session_info_is_a_json_display_object(lab):
    bundle = SessionInfo({"lab": lab})._repr_mimebundle_()
    assert bundle["application/json"]["sessions"][0]["variables"] == ["lab"]
    assert bundle["text/plain"] == "<1 workbench session(s)>"


def test_a_real_kernel_answers_the_sidebar_silently():
    """Through ipykernel, as the sidebar asks: None before workbench is imported (and it stays so)."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(SRC.parents[1]))
    try:
        def ask():
            msg_id = kc.execute("", silent=True, store_history=False, user_expressions={"lw": EXPRESSION})
            reply = kc.get_shell_msg(timeout=120)
            while reply["parent_header"].get("msg_id") != msg_id:  # a late reply to start-up requests
                reply = kc.get_shell_msg(timeout=120)
            return reply["content"]["user_expressions"]["lw"]

        before = ask()
        assert before["status"] == "ok" and "application/json" not in before["data"]
        outputs: list = []
        kc.execute_interactive("import sys; print('workbench' in sys.modules)", timeout=60,
                               output_hook=lambda m: outputs.append(m) if m["msg_type"] == "stream" else None)
        assert outputs[0]["content"]["text"].strip() == "False"  # asking imported nothing
        kc.execute_interactive(
            "from tests.conftest import tiny_lab\nlab = tiny_lab()\nlab.new_adapter('t', r=2)", timeout=120)
        after = ask()
        assert after["status"] == "ok", after
        (session,) = after["data"]["application/json"]["sessions"]
        assert session["variables"] == ["lab"] and [a["name"] for a in session["adapters"]] == ["t"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_the_tasks_of_each_adapter_are_shipped_for_the_sidebar():
    """The sidebar's Evaluate reads ``tasks`` (a merge's include its sources'), never the lineage."""
    lab = tiny_lab()
    lab.new_adapter("x", r=2).lineage["tasks"] = ["arithmetic"]
    lab.new_adapter("y", r=2, seed=1).lineage["tasks"] = ["topic"]
    lab.merge(["x", "y"], method="cat", name="xy")
    shipped = {a["name"]: a["tasks"] for a in describe({"lab": lab})["sessions"][0]["adapters"]}
    assert shipped == {"x": ["arithmetic"], "y": ["topic"], "xy": ["arithmetic", "topic"]}
    assert "lineage[" not in (SRC / "actions.ts").read_text()  # the TypeScript computes nothing


def test_routers_carry_their_kind_needs_training_and_actions(lab):
    other = tiny_lab()
    other.new_adapter("a", r=2, targets="attention")
    other.add_router("m", "meteora", bank=["a"], k=1, targets="attention")
    other.add_router("fly", "flylora", r=4, k=4, targets="q_proj")
    other.add_router("mix", "mixlora", experts=2, k=1, r=2)
    other.add_router("ps", "prompt-scale", r=2, targets="q_proj")
    other.routers["fly"].params["training"] = {"tasks": ["arithmetic"], "steps": 3}
    routers = {r["name"]: r for r in describe({"lab": other})["sessions"][0]["routers"]}
    assert {n: r["kind"] for n, r in routers.items()} == {"m": "bank", "fly": "linear", "mix": "block",
                                                         "ps": "linear"}
    assert routers["m"]["actions"] == ["use", "evaluate", "export", "freeze", "save"]
    assert routers["ps"]["actions"] == ["use", "evaluate", "export", "save"]
    assert routers["m"]["needs"] == ["task_labels"] and routers["ps"]["needs"] == ["prompt_scale"]
    assert routers["fly"]["exact_export"] and routers["m"]["exact_export"]  # k = r; a bank of one
    assert not routers["mix"]["exact_export"] and not routers["ps"]["exact_export"]
    assert routers["fly"]["trained"] == {"tasks": ["arithmetic"], "steps": 3}
    assert routers["m"]["trained"] is None
    assert "training" not in routers["fly"]["params"]
    actions = (SRC / "actions.ts").read_text()
    offered = set(re.findall(r"id: '(\w+)'", actions[actions.index("ROUTER_ACTIONS"):]))
    assert {a for r in routers.values() for a in r["actions"]} <= offered  # each has a button
    json.dumps(routers)
