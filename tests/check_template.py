"""What cfn-lint does not check inside SAM resources (lambda-toolchain §4), checked here:
every function runs `bootstrap` on provided.al2023 / arm64, is built by cargo-lambda from a real
binary of the workspace, routes through the one HTTP API (the redeliver function: the queues),
and may read only its own secrets; durable delivery as the README describes it; and what the
people who deploy and run it see (the monitoring issue): metrics names shared with the code,
alarms, the dashboard, API throttling and access logs, kept secrets and logs, the KMS key,
validated parameters, Segment's Lambda-destination role, and samconfig.toml.

Run: .venv/bin/python tests/check_template.py   (the test command does)
"""

import json
import pathlib
import re
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
    problems += monitoring(template, functions, bins)
    problems += deployment(template, functions)
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


def emf_metric_names():
    """The metric names the functions write (the outcome table in pipeline
    `delivery/outcome.rs`, and `ops/metrics.rs`), so the template's alarms and dashboard
    cannot drift from the code."""
    text = "\n".join(
        (ROOT / "shared/pipeline/src" / f).read_text()
        for f in ("delivery/outcome.rs", "ops/metrics.rs")
    )
    tuples = r'(?<![a-z])\(\s*"([A-Z][A-Za-z0-9]+)",\s*"[a-z0-9_]+",\s*(?:&mut )?self\.'
    return set(re.findall(tuples, text)) | set(
        re.findall(r'metric\(\s*"([A-Z][A-Za-z0-9]+)"', text)
    )


def sub_placeholders(text):
    """A !Sub string with its ${...} replaced, so the JSON inside can be parsed."""
    return re.sub(r"\$\{[^}]+\}", "X", text)


def monitoring(template, functions, bins):
    problems = []
    params = template["Parameters"]
    res = template["Resources"]
    conditions = template.get("Conditions", {})
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    names = emf_metric_names()
    if not {"Received", "Delivered", "RefusedAmplitude", "DeadLettered", "AmplitudeLatency"} <= names:
        problems.append(f"metrics.rs: metric names not found ({sorted(names)})")

    # 1. The namespace is a parameter the functions receive.
    if env.get("METRICS_NAMESPACE") != {"Ref": "MetricsNamespace"}:
        problems.append("Globals: METRICS_NAMESPACE is !Ref MetricsNamespace")
    if params.get("MetricsNamespace", {}).get("Default") != "SegmentAmplitude":
        problems.append("MetricsNamespace: a parameter defaulting to SegmentAmplitude")

    # 2. Alarms: optional topic; errors and throttles per function; 5xx to Segment; Amplitude
    # refusing requests; dead letters; the delivery queue's age.
    topic = params.get("AlarmTopicArn", {})
    if topic.get("Default") != "" or not re.fullmatch(topic.get("AllowedPattern", "x"), ""):
        problems.append("AlarmTopicArn: optional (default empty)")
    if conditions.get("HasAlarmTopic") != {"Not": [{"Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}:
        problems.append("Conditions: HasAlarmTopic")
    alarms = {k: v for k, v in res.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    notify = {"If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for name, a in alarms.items():
        props = a["Properties"]
        if props.get("AlarmActions") != notify:
            problems.append(f"{name}: AlarmActions notify AlarmTopicArn when given")
        if props.get("TreatMissingData") != "notBreaching":
            problems.append(f"{name}: TreatMissingData notBreaching (no traffic is not a fault)")
        if not props.get("AlarmDescription"):
            problems.append(f"{name}: a description saying what happened")

    def on(metric, namespace, dimension):
        return [
            (k, a) for k, a in alarms.items()
            if a["Properties"].get("MetricName") == metric
            and a["Properties"].get("Namespace") == namespace
            and dimension in [d.get("Value") for d in a["Properties"].get("Dimensions", [])]
        ]

    for fn_name, fn in functions.items():
        for metric in ("Errors", "Throttles"):
            found = on(metric, "AWS/Lambda", {"Ref": fn_name})
            if len(found) != 1:
                problems.append(f"{fn_name}: one alarm on AWS/Lambda {metric}")
            elif found[0][1].get("Condition") != fn.get("Condition"):
                problems.append(f"{found[0][0]}: the condition of {fn_name}")
    if len(on("5xx", "AWS/ApiGateway", {"Ref": "Api"})) != 1:
        problems.append("an alarm on the HTTP API's 5xx")
    refused = [a for a in alarms.values() if "RefusedAmplitude" in json.dumps(a)]
    routes = {b for b in bins}
    if len(refused) != 1:
        problems.append("an alarm on RefusedAmplitude (Amplitude refusing requests)")
    else:
        stats = [m["MetricStat"]["Metric"] for m in refused[0]["Properties"]["Metrics"] if "MetricStat" in m]
        covered = {d["Value"] for m in stats for d in m.get("Dimensions", []) if d["Name"] == "Route"}
        if covered != routes or any(m.get("Namespace") != {"Ref": "MetricsNamespace"} for m in stats):
            problems.append(f"RefusedAmplitude alarm: every route {sorted(routes)} in MetricsNamespace")
    dlq = on("ApproximateNumberOfMessagesVisible", "AWS/SQS", {"GetAtt": "DeadLetterQueue.QueueName"})
    if len(dlq) != 1 or dlq[0][1]["Properties"].get("Threshold") != 1 or dlq[0][1].get("Condition") != "Durable":
        problems.append("an alarm on any message in the dead-letter queue (durable mode)")
    age = on("ApproximateAgeOfOldestMessage", "AWS/SQS", {"GetAtt": "DeliveryQueue.QueueName"})
    if len(age) != 1 or age[0][1]["Properties"].get("Threshold") != {"Ref": "QueueAgeAlarmSeconds"}:
        problems.append("an alarm on the delivery queue's oldest message (QueueAgeAlarmSeconds)")

    # The dashboard: the funnel per route, Amplitude's status classes, latency percentiles, the
    # queues, and only metric names the code writes.
    dashboards = [v for v in res.values() if v["Type"] == "AWS::CloudWatch::Dashboard"]
    if len(dashboards) != 1:
        return problems + ["one CloudWatch dashboard"]
    body_sub = dashboards[0]["Properties"]["DashboardBody"]["Sub"]
    body_text = body_sub[0] if isinstance(body_sub, list) else body_sub
    try:
        body = json.loads(sub_placeholders(body_text))
    except json.JSONDecodeError as e:
        return problems + [f"Dashboard: the body is not JSON ({e})"]
    widgets = body.get("widgets", [])
    metric_rows = [row for w in widgets for row in w.get("properties", {}).get("metrics", [])]
    text = body_text
    for route in routes:
        if not any(w.get("properties", {}).get("title", "").endswith(f": {route}") for w in widgets):
            problems.append(f"Dashboard: a delivery funnel for {route}")
    for m in ("Received", "Delivered", "Queued", "Retryable", "Throttled", "RefusedAmplitude",
              "RejectedMapping", "RejectedAmplitude", "Skipped", "DeadLettered"):
        if f'"{m}"' not in text:
            problems.append(f"Dashboard: the funnel shows {m}")
    for m in ("AmplitudeStatus2xx", "AmplitudeStatus4xx", "AmplitudeStatus429", "AmplitudeStatus5xx",
              "AmplitudeNoAnswer"):
        if m not in text:
            problems.append(f"Dashboard: Amplitude status class {m}")
    if "'p99'" not in text or "AmplitudeLatency" not in text or "InvocationLatency" not in text:
        problems.append("Dashboard: latency percentiles (Amplitude requests and invocations)")
    for q in ("DeliveryQueueName", "DeletionQueueName", "DeadLetterQueueName"):
        if "${" + q + "}" not in text:
            problems.append(f"Dashboard: the queue {q}")
    for w in widgets:
        for k, v in w.get("properties", {}).items():
            if k == "region" and v != "X":
                problems.append("Dashboard: every widget in the stack's region")
    used = set(re.findall(r'MetricName=\\?"([A-Za-z0-9]+)\\?"', text))
    used |= {row[1] for row in metric_rows if isinstance(row, list) and len(row) > 1 and row[0] == "X"}
    used.discard(".")
    if used - names:
        problems.append(f"Dashboard: metric names the code does not write: {sorted(used - names)}")
    for alarm_metric in re.findall(r"MetricName: ([A-Za-z0-9]+)", json.dumps(refused)):
        if alarm_metric not in names:
            problems.append(f"alarm: {alarm_metric} is not written by the code")
    return problems


def deployment(template, functions):
    """The template an AWS engineer signs off: throttling, access logs, kept secrets and logs,
    the KMS key, validated parameters, the 30 s integration limit, Segment's role, samconfig."""
    problems = []
    params = template["Parameters"]
    res = template["Resources"]

    api = res["Api"]["Properties"]
    throttling = api.get("DefaultRouteSettings", {})
    for key, param in (("ThrottlingRateLimit", "ApiThrottlingRateLimit"),
                       ("ThrottlingBurstLimit", "ApiThrottlingBurstLimit")):
        if throttling.get(key) != {"Ref": param} or not isinstance(params.get(param, {}).get("Default"), int):
            problems.append(f"Api: DefaultRouteSettings.{key} from the parameter {param} with a default")
    logs = api.get("AccessLogSettings", {})
    dest = logs.get("DestinationArn", {}).get("GetAtt", "")
    if not dest.endswith(".Arn") or res.get(dest[:-4], {}).get("Type") != "AWS::Logs::LogGroup":
        problems.append("Api: access logs to a log group of the stack")
    try:
        fmt = json.loads(logs.get("Format", ""))
        if fmt.get("requestId") != "$context.requestId" or "status" not in fmt:
            problems.append("Api: access log format with requestId and status")
    except json.JSONDecodeError:
        problems.append("Api: the access log format is JSON")

    for name, r in res.items():
        if r["Type"] in ("AWS::SecretsManager::Secret", "AWS::Logs::LogGroup", "AWS::SQS::Queue"):
            if r.get("DeletionPolicy") != "Retain" or r.get("UpdateReplacePolicy") != "Retain":
                problems.append(f"{name}: DeletionPolicy and UpdateReplacePolicy Retain")
        if r["Type"] == "AWS::SecretsManager::Secret":
            if r["Properties"].get("KmsKeyId") != {"If": ["HasKmsKey", {"Ref": "SecretsKmsKeyArn"}, {"Ref": "AWS::NoValue"}]}:
                problems.append(f"{name}: KmsKeyId from SecretsKmsKeyArn when given")
    log_groups = {r["Properties"]["LogGroupName"]["Sub"] for r in res.values()
                  if r["Type"] == "AWS::Logs::LogGroup" and "LogGroupName" in r["Properties"]}
    for fn_name in functions:
        if f"/aws/lambda/${{{fn_name}}}" not in log_groups:
            problems.append(f"{fn_name}: a log group of the stack (retention, kept)")

    key = res.get("SecretsKeyPolicy", {})
    doc = key.get("Properties", {}).get("PolicyDocument", {}).get("Statement", [])
    if key.get("Condition") != "HasKmsKey" or len(doc) != 1 or doc[0].get("Action") != "kms:Decrypt" \
            or doc[0].get("Resource") != {"Ref": "SecretsKmsKeyArn"} \
            or "kms:ViaService" not in json.dumps(doc[0].get("Condition", {})):
        problems.append("SecretsKeyPolicy: kms:Decrypt on SecretsKmsKeyArn, via Secrets Manager only")
    roles = json.dumps(key.get("Properties", {}).get("Roles", []))
    for fn_name in functions:
        if f"{fn_name}Role" not in roles:
            problems.append(f"SecretsKeyPolicy: for {fn_name}")

    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:seg/ingest-AbC123"
    for p in ("IngestSecretArn", "PrivacySecretArn"):
        pattern = params.get(p, {}).get("AllowedPattern")
        if not pattern or not re.fullmatch(pattern, arn) or not re.fullmatch(pattern, "") \
                or re.fullmatch(pattern, "seg/ingest") or re.fullmatch(pattern, "arn:aws:s3:::bucket"):
            problems.append(f"{p}: validated as a secret ARN (or empty)")
    kms = params.get("SecretsKmsKeyArn", {}).get("AllowedPattern", "")
    if not re.fullmatch(kms, "") or not re.fullmatch(kms, "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab") \
            or re.fullmatch(kms, "alias/mine"):
        problems.append("SecretsKmsKeyArn: validated as a KMS key ARN (or empty)")
    if params.get("FunctionTimeout", {}).get("MaxValue", 10**6) > 30:
        problems.append("FunctionTimeout: at most the HTTP API's 30 s integration limit")

    role = res.get("SegmentInvokeRole", {})
    if role.get("Condition") != "SegmentLambdaDestination" or params.get("SegmentExternalId", {}).get("Default") != "":
        problems.append("SegmentInvokeRole: optional, created when SegmentExternalId is given")
    trust = role.get("Properties", {}).get("AssumeRolePolicyDocument", {}).get("Statement", [{}])
    if len(trust) != 1 or "${SegmentAccountId}" not in json.dumps(trust[0].get("Principal")) \
            or trust[0].get("Condition") != {"StringEquals": {"sts:ExternalId": {"Ref": "SegmentExternalId"}}}:
        problems.append("SegmentInvokeRole: trusts Segment's account with the external id only")
    if params.get("SegmentAccountId", {}).get("Default") != "595280932656":
        problems.append("SegmentAccountId: Segment's documented account by default")
    grants = [st for pol in role.get("Properties", {}).get("Policies", [])
              for st in pol["PolicyDocument"]["Statement"]]
    invokable = {r["GetAtt"] for st in grants for r in st.get("Resource", [])}
    if [st.get("Action") for st in grants] != ["lambda:InvokeFunction"] or invokable != {
        "EventsFunction.Arn", "AliasFunction.Arn", "EngageFunction.Arn"
    }:
        problems.append("SegmentInvokeRole: lambda:InvokeFunction on the events, alias and engage functions only")
    if "SegmentRoleArn" not in template.get("Outputs", {}):
        problems.append("Outputs: SegmentRoleArn")

    samconfig = ROOT / "samconfig.toml"
    if not samconfig.exists():
        problems.append("samconfig.toml: missing")
    else:
        cfg = tomllib.loads(samconfig.read_text())
        deploy = cfg.get("default", {}).get("deploy", {}).get("parameters", {})
        build = cfg.get("default", {}).get("build", {}).get("parameters", {})
        if deploy.get("confirm_changeset") is not True or "CAPABILITY_IAM" not in str(deploy.get("capabilities")):
            problems.append("samconfig.toml: deploy confirms the change set, with CAPABILITY_IAM")
        if build.get("beta_features") is not True:
            problems.append("samconfig.toml: build with beta_features (cargo-lambda builds)")
        if build.get("cached"):
            # SAM's cache hashes every file under CodeUri (the workspace with target/) first.
            problems.append("samconfig.toml: build without SAM's cache (it hashes target/)")
    if ".aws-sam/" not in (ROOT / ".gitignore").read_text().split():
        problems.append(".gitignore: .aws-sam/")
    return problems


if __name__ == "__main__":
    sys.exit(main())
