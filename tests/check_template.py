"""What cfn-lint does not check inside SAM resources (lambda-toolchain §4), checked here:
every function runs `bootstrap` on provided.al2023 / arm64, is built by cargo-lambda from a real
binary of the workspace, routes through the one HTTP API (the redeliver function: the queues),
and may read only its own secrets; and durable delivery as the README describes it.

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
            if binary == "redeliver":
                if ev.get("Type") != "SQS":
                    problems.append(f"{name}.{ev_name}: the redeliver function is fed by SQS only")
            elif ev.get("Type") != "HttpApi" or ev.get("Properties", {}).get("ApiId") != {"Ref": "Api"}:
                problems.append(f"{name}.{ev_name}: must be an HttpApi event on !Ref Api")
        reads = [
            s.get("Resource")
            for p in props.get("Policies", [])
            for s in p.get("Statement", [])
            if "secretsmanager:GetSecretValue" in str(s.get("Action"))
        ]
        privacy = any("PrivacySecret" in str(r) for r in reads)
        if privacy != (binary in ("deletions", "redeliver")):
            problems.append(f"{name}: only the deletions and redeliver functions may read the privacy secret")
        if binary == "deletions" and props.get("ReservedConcurrentExecutions") != 1:
            problems.append(f"{name}: needs ReservedConcurrentExecutions 1 (one deletion request per second)")
    problems += durable_delivery(template, functions)
    for p in problems:
        print("template:", p)
    print(f"template: {len(functions)} functions checked, {len(problems)} problems")
    return 1 if problems else 0


def statements(fn):
    return [st for p in fn.get("Properties", {}).get("Policies", []) for st in p.get("Statement", [])]


def durable_delivery(template, functions):
    """The queues, the redeliver function and their permissions (the durable-delivery issue)."""
    problems = []
    params = template["Parameters"]
    res = template["Resources"]
    if params.get("DurableDelivery", {}).get("Default") != "true":
        problems.append("DurableDelivery: a parameter defaulting to true")
    queues = {"DeliveryQueue": False, "DeletionQueue": True, "DeadLetterQueue": False}
    for q, fifo in queues.items():
        r = res.get(q)
        if not r or r.get("Type") != "AWS::SQS::Queue" or r.get("Condition") != "Durable":
            problems.append(f"{q}: an SQS queue under the Durable condition")
            continue
        props = r["Properties"]
        if props.get("SqsManagedSseEnabled") is not True:
            problems.append(f"{q}: SQS-managed encryption")
        if bool(props.get("FifoQueue")) != fifo:
            problems.append(f"{q}: FifoQueue must be {fifo}")
        if props.get("MaximumMessageSize", 262144) < 262144:
            problems.append(f"{q}: jobs are up to 256 KiB")
        if q != "DeadLetterQueue" and "FindInMap" not in str(props.get("VisibilityTimeout")):
            problems.append(f"{q}: visibility timeout six times the redeliver timeout")
    if res.get("DeadLetterQueue", {}).get("Properties", {}).get("MessageRetentionPeriod") != 1209600:
        problems.append("DeadLetterQueue: 14-day retention")
    for timeout, row in template.get("Mappings", {}).get("RedeliverTimeouts", {}).items():
        if row.get("Visibility") != 6 * int(timeout):
            problems.append(f"RedeliverTimeouts.{timeout}: visibility must be six times the timeout")
    redrive = res.get("DeliveryQueue", {}).get("Properties", {}).get("RedrivePolicy", {})
    if redrive.get("deadLetterTargetArn") != {"GetAtt": "DeadLetterQueue.Arn"}:
        problems.append("DeliveryQueue: redrive to the dead-letter queue")

    redeliver = functions.get("RedeliverFunction")
    if not redeliver:
        return problems + ["RedeliverFunction: missing"]
    events = redeliver["Properties"].get("Events", {})
    for ev_name, queue in (("Delivery", "DeliveryQueue"), ("Deletion", "DeletionQueue")):
        ev = events.get(ev_name, {}).get("Properties", {})
        if ev.get("Queue") != {"GetAtt": f"{queue}.Arn"}:
            problems.append(f"RedeliverFunction.{ev_name}: fed by {queue}")
        if ev.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
            problems.append(f"RedeliverFunction.{ev_name}: ReportBatchItemFailures")
        if "MaximumConcurrency" not in ev.get("ScalingConfig", {}):
            problems.append(f"RedeliverFunction.{ev_name}: ScalingConfig.MaximumConcurrency")
    if "MaximumBatchingWindowInSeconds" not in events.get("Delivery", {}).get("Properties", {}):
        problems.append("RedeliverFunction.Delivery: a batching window")
    if events.get("Deletion", {}).get("Properties", {}).get("BatchSize") != 1:
        problems.append("RedeliverFunction.Deletion: one deletion job at a time")

    def actions(st):
        a = st.get("Action")
        return set(a if isinstance(a, list) else [a])

    sqs = [st for st in statements(redeliver) if any(a.startswith("sqs:") for a in actions(st))]
    granted = {(a, str(r)) for st in sqs for a in actions(st)
               for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])}
    for q in ("DeliveryQueue", "DeletionQueue"):
        for a in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage"):
            if (a, str({"GetAtt": f"{q}.Arn"})) not in granted:
                problems.append(f"RedeliverFunction: {a} on {q}")
    if ("sqs:SendMessage", str({"GetAtt": "DeadLetterQueue.Arn"})) not in granted:
        problems.append("RedeliverFunction: sqs:SendMessage on DeadLetterQueue")
    if any(a == "sqs:*" or "*" == str(r) for a, r in granted):
        problems.append("RedeliverFunction: no wildcard SQS permission")

    # The ingest functions: only sqs:SendMessage, only to the delivery queue.
    ingest = res.get("IngestQueuePolicy", {})
    doc = ingest.get("Properties", {}).get("PolicyDocument", {}).get("Statement", [])
    if ingest.get("Condition") != "Durable" or doc != [
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"GetAtt": "DeliveryQueue.Arn"}}
    ]:
        problems.append("IngestQueuePolicy: exactly sqs:SendMessage on the delivery queue")
    roles = {r["Ref"] for r in ingest.get("Properties", {}).get("Roles", [])}
    wanted = {f"{n}Role" for n in functions if n != "RedeliverFunction"}
    if roles != wanted:
        problems.append(f"IngestQueuePolicy: for the ingest functions' roles {sorted(wanted)}")
    for name, fn in functions.items():
        if name == "RedeliverFunction":
            continue
        if any(any(a.startswith("sqs:") for a in actions(st)) for st in statements(fn)):
            problems.append(f"{name}: SQS access only through IngestQueuePolicy")
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    if env.get("DELIVERY_QUEUE_URL") != {"If": ["Durable", {"Ref": "DeliveryQueue"}, ""]}:
        problems.append("Globals: DELIVERY_QUEUE_URL is the delivery queue when durable, empty otherwise")
    outputs = template.get("Outputs", {})
    for out in ("DeliveryQueueUrl", "DeletionQueueUrl", "DeadLetterQueueUrl", "DeadLetterQueueArn"):
        if out not in outputs:
            problems.append(f"Outputs: {out}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
