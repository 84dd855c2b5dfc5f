"""What cfn-lint does not check inside SAM resources (lambda-toolchain §4), checked here, on the
template as written and, for permissions, on the template SAM transforms it into (what AWS
creates, with `aws-sam-translator`):
every function runs `bootstrap` on provided.al2023 / arm64, is built by cargo-lambda from a real
binary of the workspace, routes through the one HTTP API (the redeliver function: the queues),
and may read only its own secrets; durable delivery as the README describes it; and what the
people who deploy and run it see (the monitoring issue): metrics names shared with the code,
alarms, the dashboard, API throttling and access logs, kept secrets and logs, the KMS key,
validated parameters, Segment's Lambda-destination role, and samconfig.toml.

Run: .venv/bin/python tests/check_template.py   (the test command does)
"""

import json
import logging
import os
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
    text = (ROOT / "template.yaml").read_text()
    problems = check(text)
    for p in problems:
        print("template:", p)
    functions = len(re.findall(r"Type: AWS::Serverless::Function", text))
    print(f"template: {functions} functions checked, {len(problems)} problems")
    return 1 if problems else 0


def check(text):
    """Every problem of the template `text` (tests/check_template_test.py breaks each rule)."""
    template = yaml.load(text, Loader=Loader)
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
            for s in statements(template, fn)
            if "secretsmanager:GetSecretValue" in str(s.get("Action"))
        ]
        privacy = any("PrivacySecret" in str(r) for r in reads)
        if privacy != (binary in ("deletions", "redeliver")):
            problems.append(f"{name}: only the deletions and redeliver functions may read the privacy secret")
        if binary == "deletions" and (
            props.get("ReservedConcurrentExecutions") != {"If": ["ReserveDeletions", 1, {"Ref": "AWS::NoValue"}]}
            or template["Parameters"].get("ReserveDeletionsConcurrency", {}).get("Default") != "false"
        ):
            problems.append(f"{name}: ReservedConcurrentExecutions 1 only when ReserveDeletionsConcurrency (default false) asks")
    problems += durable_delivery(template, functions)
    problems += monitoring(template, functions, bins)
    problems += deployment(template, functions)
    problems += sessions(template, functions)
    problems += transformed(text)
    return problems


def sessions(template, functions):
    """Server-side sessions (mapping §18): an on-demand table with a time-to-live and
    encryption, made only when `Sessions` is "true"; read and written by the events function
    alone, with exactly the two calls it makes; an alarm on its throttles and one on events left
    without a session."""
    problems = []
    res = template["Resources"]
    if template["Parameters"].get("Sessions", {}).get("Default") != "false":
        problems.append('Sessions: a parameter, "false" by default')
    table = res.get("SessionsTable", {})
    props = table.get("Properties", {})
    if table.get("Type") != "AWS::DynamoDB::Table" or table.get("Condition") != "HasSessions":
        problems.append("SessionsTable: a DynamoDB table made only with Sessions")
    if props.get("BillingMode") != "PAY_PER_REQUEST":
        problems.append("SessionsTable: on-demand (PAY_PER_REQUEST)")
    if props.get("TimeToLiveSpecification") != {"AttributeName": "expires", "Enabled": True}:
        problems.append("SessionsTable: time-to-live on `expires` (the attribute the code writes)")
    if props.get("SSESpecification", {}).get("SSEEnabled") is not True:
        problems.append("SessionsTable: encrypted with KMS (SSEEnabled)")
    if props.get("KeySchema") != [{"AttributeName": "k", "KeyType": "HASH"}]:
        problems.append("SessionsTable: keyed by `k` (the attribute the code writes)")
    table_arn = {"GetAtt": "SessionsTable.Arn"}
    for name, fn in functions.items():
        binary = fn.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        dynamo = [st for st in statements(template, fn) if "dynamodb:" in str(st.get("Action"))]
        env = fn.get("Properties", {}).get("Environment", {}).get("Variables", {})
        if binary != "events":
            if dynamo or "SESSIONS_TABLE" in env:
                problems.append(f"{name}: only the events function reaches the sessions' table")
            continue
        actions = sorted(a for st in dynamo for a in (
            st["Action"] if isinstance(st["Action"], list) else [st["Action"]]))
        if actions != ["dynamodb:BatchGetItem", "dynamodb:UpdateItem"] or any(
                st.get("Resource") != table_arn for st in dynamo):
            problems.append(f"{name}: dynamodb:BatchGetItem and dynamodb:UpdateItem on the sessions' table only")
        if env.get("SESSIONS_TABLE") != {"If": ["HasSessions", {"Ref": "SessionsTable"}, ""]}:
            problems.append(f"{name}: SESSIONS_TABLE names the sessions' table when Sessions is on")
    alarms = {n: r for n, r in res.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    throttles = [n for n, r in alarms.items() if r.get("Condition") == "HasSessions"
                 and "ReadThrottleEvents" in str(r) and "WriteThrottleEvents" in str(r)
                 and "SessionsTable" in str(r)]
    if not throttles:
        problems.append("alarm: throttles on the sessions' table")
    degraded = [n for n, r in alarms.items() if r.get("Condition") == "HasSessions"
                and r["Properties"].get("MetricName") == "SessionsDegraded"]
    if not degraded or "SessionsDegraded" not in emf_metric_names():
        problems.append("alarm: events left without a session (SessionsDegraded)")
    return problems


def policies(items):
    """A role's policies, a conditional one (`!If [cond, policy, !Ref AWS::NoValue]`, raw or
    transformed) counted as present."""
    out = []
    for p in items:
        branches = p.get("If") or p.get("Fn::If")
        if branches:
            out += [b for b in branches[1:] if isinstance(b, dict) and "PolicyDocument" in b]
        else:
            out.append(p)
    return out


def statements(template, fn):
    """The statements of a function's own role (`Role: !GetAtt <Role>.Arn`)."""
    role = fn.get("Properties", {}).get("Role", {}).get("GetAtt", "")
    res = template["Resources"].get(role.removesuffix(".Arn"), {})
    return [st for p in policies(res.get("Properties", {}).get("Policies", []))
            for st in p.get("PolicyDocument", {}).get("Statement", [])]


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
    for source, target in (("DeliveryQueue", "DeadLetterQueue"), ("DeletionQueue", "DeletionDeadLetterQueue")):
        redrive = res.get(source, {}).get("Properties", {}).get("RedrivePolicy", {})
        if redrive.get("deadLetterTargetArn") != {"GetAtt": f"{target}.Arn"}:
            problems.append(f"{source}: redrive to {target}")
        target_props = res.get(target, {}).get("Properties", {})
        if bool(target_props.get("FifoQueue")) != bool(res.get(source, {}).get("Properties", {}).get("FifoQueue")):
            problems.append(f"{target}: FIFO exactly when {source} is")
        allow = target_props.get("RedriveAllowPolicy", {})
        name = json.dumps(res.get(source, {}).get("Properties", {}).get("QueueName", {}))
        sources = json.dumps(allow.get("sourceQueueArns"))
        suffix = re.search(r'"([a-z-]+)-\$\{Id\}(\.fifo)?"', name)
        if allow.get("redrivePermission") != "byQueue" or not suffix or suffix.group(0)[1:-1] not in sources:
            problems.append(f"{target}: RedriveAllowPolicy byQueue naming {source} only")

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

    sqs = [st for st in statements(template, redeliver) if any(a.startswith("sqs:") for a in actions(st))]
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
    wanted = {f"{n.removesuffix('Function')}Role" for n in functions if n != "RedeliverFunction"}
    if roles != wanted:
        problems.append(f"IngestQueuePolicy: for the ingest functions' roles {sorted(wanted)}")
    for name, fn in functions.items():
        if name == "RedeliverFunction":
            continue
        if any(any(a.startswith("sqs:") for a in actions(st)) for st in statements(template, fn)):
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
        silence = name == "NoTrafficAlarm"
        if props.get("TreatMissingData") != ("breaching" if silence else "notBreaching"):
            problems.append(f"{name}: TreatMissingData notBreaching (no traffic is not a fault), "
                            "except the no-traffic alarm's breaching")
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
    for queue in ("DeliveryQueue", "DeletionQueue"):
        age = on("ApproximateAgeOfOldestMessage", "AWS/SQS", {"GetAtt": f"{queue}.QueueName"})
        if len(age) != 1 or age[0][1]["Properties"].get("Threshold") != {"Ref": "QueueAgeAlarmSeconds"}:
            problems.append(f"an alarm on the {queue}'s oldest message (QueueAgeAlarmSeconds)")
    fifo_dlq = on("ApproximateNumberOfMessagesVisible", "AWS/SQS", {"GetAtt": "DeletionDeadLetterQueue.QueueName"})
    if len(fifo_dlq) != 1 or fifo_dlq[0][1].get("Condition") != "Durable":
        problems.append("an alarm on any message in the deletion dead-letter queue (durable mode)")
    # Refusals Segment drops, and silence, are alarms too (a wrong token loses everything).
    ingest_routes = routes - {"redeliver"}
    for alarm, metric in (("RequestsRefusedAlarm", "RequestsRefused"), ("NoTrafficAlarm", "Received")):
        a = alarms.get(alarm, {}).get("Properties", {})
        stats = [m["MetricStat"]["Metric"] for m in a.get("Metrics", []) if "MetricStat" in m]
        covered = {d["Value"] for m in stats for d in m.get("Dimensions", []) if d["Name"] == "Route"}
        if covered != ingest_routes or any(m.get("MetricName") != metric for m in stats):
            problems.append(f"{alarm}: {metric} of every ingest route {sorted(ingest_routes)}")
    if alarms.get("NoTrafficAlarm", {}).get("Condition") != "HasNoTrafficAlarm" \
            or params.get("NoTrafficAlarmHours", {}).get("Default") != 24:
        problems.append("NoTrafficAlarm: on NoTrafficAlarmHours (24 by default; 0 turns it off)")

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
        for needed in ("$context.error.message", "$context.integrationErrorMessage",
                       "$context.integration.requestId"):
            if needed not in fmt.values():
                problems.append(f"Api: access log format with {needed}")
    except json.JSONDecodeError:
        problems.append("Api: the access log format is JSON")
    rate = params.get("ApiThrottlingRateLimit", {}).get("Default", 10**6)
    burst = params.get("ApiThrottlingBurstLimit", {}).get("Default", 10**6)
    if rate > 50 or burst > 2 * rate or "concurren" not in params.get("ApiThrottlingRateLimit", {}).get("Description", ""):
        # A new account runs 10 functions at once: more than ~25 requests/s is throttled by
        # Lambda first, and API Gateway then answers 500 instead of 429.
        problems.append("ApiThrottlingRateLimit/BurstLimit: defaults sized to a new account's concurrency, and why")

    for name, r in res.items():
        if r["Type"] in ("AWS::SecretsManager::Secret", "AWS::Logs::LogGroup", "AWS::SQS::Queue"):
            if r.get("DeletionPolicy") != "RetainExceptOnCreate" or r.get("UpdateReplacePolicy") != "Retain":
                problems.append(f"{name}: DeletionPolicy RetainExceptOnCreate, UpdateReplacePolicy Retain")
        if r["Type"] == "AWS::SecretsManager::Secret":
            if r["Properties"].get("KmsKeyId") != {"If": ["HasKmsKey", {"Ref": "SecretsKmsKeyArn"}, {"Ref": "AWS::NoValue"}]}:
                problems.append(f"{name}: KmsKeyId from SecretsKmsKeyArn when given")
    # Editing a created secret's generator regenerates the secret (a new bearer token, the API
    # key back to the placeholder: every Segment request 401): these blocks never change.
    generated = {
        "IngestSecret": {"SecretStringTemplate": '{"api_key": "SET-YOUR-AMPLITUDE-API-KEY"}',
                         "GenerateStringKey": "bearer_token", "PasswordLength": 40,
                         "ExcludePunctuation": True},
        "PrivacySecret": {"SecretStringTemplate": '{"secret_key": ""}',
                          "GenerateStringKey": "operator_token", "PasswordLength": 40,
                          "ExcludePunctuation": True},
    }
    for name, block in generated.items():
        if res.get(name, {}).get("Properties", {}).get("GenerateSecretString") != block:
            problems.append(f"{name}: GenerateSecretString changed (it would regenerate the secret)")
    levels = params.get("ApplicationLogLevel", {}).get("AllowedValues", [])
    if not levels or {"ERROR", "FATAL"} & set(levels):
        problems.append("ApplicationLogLevel: at most WARN (the metric lines are written at WARN)")
    for fn_name, fn in functions.items():
        if fn.get("Properties", {}).get("LoggingConfig", {}).get("ApplicationLogLevel") != {"Ref": "ApplicationLogLevel"}:
            problems.append(f"{fn_name}: LoggingConfig.ApplicationLogLevel from ApplicationLogLevel")
        group = fn.get("Properties", {}).get("LoggingConfig", {}).get("LogGroup", {}).get("Ref", "")
        if res.get(group, {}).get("Type") != "AWS::Logs::LogGroup" or group != fn_name.replace("Function", "Logs"):
            problems.append(f"{fn_name}: its own log group of the stack (LoggingConfig.LogGroup)")

    key = res.get("SecretsKeyPolicy", {})
    doc = key.get("Properties", {}).get("PolicyDocument", {}).get("Statement", [])
    if key.get("Condition") != "HasKmsKey" or len(doc) != 1 or doc[0].get("Action") != "kms:Decrypt" \
            or doc[0].get("Resource") != {"Ref": "SecretsKmsKeyArn"} \
            or "kms:ViaService" not in json.dumps(doc[0].get("Condition", {})):
        problems.append("SecretsKeyPolicy: kms:Decrypt on SecretsKmsKeyArn, via Secrets Manager only")
    roles = json.dumps(key.get("Properties", {}).get("Roles", []))
    for fn_name in functions:
        if f"{fn_name.removesuffix('Function')}Role" not in roles:
            problems.append(f"SecretsKeyPolicy: for {fn_name}")

    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:seg/ingest-AbC123"
    partial = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:seg/ingest"
    for p in ("IngestSecretArn", "PrivacySecretArn"):
        pattern = params.get(p, {}).get("AllowedPattern")
        if not pattern or not re.fullmatch(pattern, arn) or not re.fullmatch(pattern, "") \
                or re.fullmatch(pattern, "seg/ingest") or re.fullmatch(pattern, "arn:aws:s3:::bucket") \
                or re.fullmatch(pattern, partial):
            problems.append(f"{p}: validated as a full secret ARN, with its suffix (or empty)")
    url = params.get("AmplitudeBaseUrl", {}).get("AllowedPattern", "")
    if not re.fullmatch(url, "") or not re.fullmatch(url, "https://amplitude.example.com/_host/{host}") \
            or re.fullmatch(url, "http://amplitude.example.com"):
        problems.append("AmplitudeBaseUrl: https:// only (or empty)")
    if params.get("DeliveryMaxAgeSeconds", {}).get("MaxValue", 10**9) > 12 * 86400:
        problems.append("DeliveryMaxAgeSeconds: at most 12 days, so a job is dead-lettered before SQS drops it")
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
    if len(trust) != 1 or trust[0].get("Principal") != {"AWS": {"Ref": "SegmentPrincipal"}} \
            or trust[0].get("Condition") != {"StringEquals": {"sts:ExternalId": {"Ref": "SegmentExternalId"}}}:
        problems.append("SegmentInvokeRole: trusts SegmentPrincipal with the external id only")
    if params.get("SegmentPrincipal", {}).get("Default") != "arn:aws:iam::595280932656:root":
        problems.append("SegmentPrincipal: Segment's documented account (arn:aws:iam::595280932656:root) by default")
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


class NoManagedPolicies:
    """SAM asks for the managed policies' ARNs only to attach them; none may be attached."""

    def load(self):
        return {}


def transformed(text):
    """What AWS creates: the template as SAM transforms it. Each function runs with a role of
    the stack that has no managed policy (SAM's AWSLambdaBasicExecutionRole writes logs
    anywhere, AWSLambdaSQSQueueExecutionRole reads every queue of the account), writes logs only
    to its own log group, and reaches SQS only on the stack's queues; no permission is on "*"."""
    from cfnlint.decode import decode_str
    from samtranslator.translator.transform import transform

    problems = []
    raw, errors = decode_str(text)
    if errors:
        return [f"the template does not decode: {errors[0]}"]
    raw = json.loads(json.dumps(raw))
    raw["Globals"]["Function"]["CodeUri"] = "s3://bucket/code.zip"  # as `sam package` does
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    try:
        out = transform(raw, {}, NoManagedPolicies())
    except Exception as e:  # noqa: BLE001 - the translator's own errors name the resource
        return [f"SAM cannot transform the template: {e}"]
    res = out["Resources"]
    queues = {n for n, r in res.items() if r["Type"] == "AWS::SQS::Queue"}

    def docs(role):
        own = [p["PolicyDocument"] for p in policies(res[role]["Properties"].get("Policies", []))]
        attached = [r["Properties"]["PolicyDocument"] for r in res.values()
                    if r["Type"] == "AWS::IAM::Policy"
                    and {"Ref": role} in r["Properties"].get("Roles", [])]
        return own + attached

    for name, fn in res.items():
        if fn["Type"] != "AWS::Lambda::Function":
            continue
        role = fn["Properties"].get("Role", {}).get("Fn::GetAtt", [None])[0]
        if res.get(role, {}).get("Type") != "AWS::IAM::Role":
            problems.append(f"{name} (transformed): runs with a role of the stack")
            continue
        if res[role]["Properties"].get("ManagedPolicyArns"):
            problems.append(f"{name} (transformed): {role} has managed policies")
        group = fn["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
        for doc in docs(role):
            for st in doc.get("Statement", []):
                acts = st.get("Action")
                acts = acts if isinstance(acts, list) else [acts]
                targets = st.get("Resource")
                targets = targets if isinstance(targets, list) else [targets]
                if "*" in targets or any(a.endswith(":*") or a == "*" for a in acts):
                    problems.append(f"{name} (transformed): a wildcard permission in {role}")
                if any(a.startswith("logs:") for a in acts) and targets != [{"Fn::GetAtt": [group, "Arn"]}]:
                    problems.append(f"{name} (transformed): logs only to its own log group")
                if any(a.startswith("dynamodb:") for a in acts) and targets != [
                        {"Fn::GetAtt": ["SessionsTable", "Arn"]}]:
                    problems.append(f"{name} (transformed): DynamoDB only on the sessions' table")
                if any(a.startswith("sqs:") for a in acts):
                    for t in targets:
                        arn_of = t.get("Fn::GetAtt", [None])[0] if isinstance(t, dict) else None
                        if arn_of not in queues:
                            problems.append(f"{name} (transformed): SQS only on the stack's queues")
    return problems


if __name__ == "__main__":
    sys.exit(main())
