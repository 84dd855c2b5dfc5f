"""What cfn-lint does not check inside SAM resources (lambda-toolchain §4), checked here:
every function runs `bootstrap` on provided.al2023 / arm64, is built by cargo-lambda from a real
binary of the workspace, routes through the one HTTP API, and may read only its own secrets.

Run: .venv/bin/python tests/check_template.py   (the test command does)
"""

import pathlib
import sys
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent


class Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !If, !Sub, ...) kept as {tag: value}."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


Loader.add_multi_constructor("!", _tag)


def binaries():
    names = set()
    for manifest in (ROOT / "functions").glob("*/Cargo.toml"):
        for b in tomllib.loads(manifest.read_text()).get("bin", []):
            names.add(b["name"])
    return names


def main():
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    glob = template["Globals"]["Function"]
    resources = template["Resources"]
    bins = binaries()
    problems = []
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
    if not functions:
        problems.append("no functions")
    for name, fn in functions.items():
        props = {**glob, **fn.get("Properties", {})}
        if props.get("Runtime") != "provided.al2023":
            problems.append(f"{name}: Runtime must be provided.al2023")
        if props.get("Architectures") != ["arm64"]:
            problems.append(f"{name}: Architectures must be [arm64]")
        if props.get("Handler") != "bootstrap":
            problems.append(f"{name}: Handler must be bootstrap")
        meta = fn.get("Metadata", {})
        if meta.get("BuildMethod") != "rust-cargolambda":
            problems.append(f"{name}: BuildMethod must be rust-cargolambda")
        binary = meta.get("BuildProperties", {}).get("Binary")
        if binary not in bins:
            problems.append(f"{name}: Binary {binary!r} is not a [[bin]] under functions/ ({sorted(bins)})")
        events = props.get("Events", {})
        if not events:
            problems.append(f"{name}: no route")
        for ev_name, ev in events.items():
            if ev.get("Type") != "HttpApi" or ev.get("Properties", {}).get("ApiId") != {"Ref": "Api"}:
                problems.append(f"{name}.{ev_name}: must be an HttpApi event on !Ref Api")
        reads = [
            s.get("Resource")
            for p in props.get("Policies", [])
            for s in p.get("Statement", [])
            if "secretsmanager:GetSecretValue" in str(s.get("Action"))
        ]
        privacy = any("PrivacySecret" in str(r) for r in reads)
        if privacy != (binary == "deletions"):
            problems.append(f"{name}: only the deletions function may read the privacy secret")
        if binary == "deletions" and props.get("ReservedConcurrentExecutions") != 1:
            problems.append(f"{name}: needs ReservedConcurrentExecutions 1 (one deletion request per second)")
    for p in problems:
        print("template:", p)
    print(f"template: {len(functions)} functions checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
