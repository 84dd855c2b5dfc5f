"""Each rule of check_template.py that guards a first deployment, against a template that
breaks it: the template as written passes, and each mutation below makes exactly the rule
it breaks report a problem.

Run: .venv/bin/python tests/check_template_test.py   (the test command does)
"""

import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import check_template  # noqa: E402

TEMPLATE = (check_template.ROOT / "template.yaml").read_text()

# (what the mutation breaks, text in the template, its replacement, the problem expected)
MUTATIONS = [
    (
        "a sessions' table with provisioned capacity",
        "      BillingMode: PAY_PER_REQUEST\n      AttributeDefinitions:\n        - AttributeName: k",
        "      BillingMode: PROVISIONED\n      AttributeDefinitions:\n        - AttributeName: k",
        "SessionsTable: on-demand (PAY_PER_REQUEST)",
    ),
    (
        "a sessions' table that keeps every key forever",
        "        AttributeName: expires\n        Enabled: true",
        "        AttributeName: expires\n        Enabled: false",
        "SessionsTable: time-to-live on `expires` (the attribute the code writes)",
    ),
    (
        "the events function scanning the sessions' table",
        "                    - dynamodb:UpdateItem\n",
        "                    - dynamodb:UpdateItem\n                    - dynamodb:Scan\n",
        "EventsFunction: dynamodb:BatchGetItem and dynamodb:UpdateItem on the sessions' table only",
    ),
    (
        "DynamoDB on every table of the account",
        "                  Resource: !GetAtt SessionsTable.Arn",
        "                  Resource: \"*\"",
        "EventsFunction (transformed): a wildcard permission in EventsRole",
    ),
    (
        "no alarm when sessions degrade",
        "      MetricName: SessionsDegraded\n",
        "      MetricName: SessionsSkipped\n",
        "alarm: events left without a session (SessionsDegraded)",
    ),
    (
        "a reserved instance for deletions whatever the parameter",
        "ReservedConcurrentExecutions: !If [ReserveDeletions, 1, !Ref AWS::NoValue]",
        "ReservedConcurrentExecutions: 1",
        "ReservedConcurrentExecutions 1 only when ReserveDeletionsConcurrency",
    ),
    (
        "a queue kept even when the first create fails",
        "  DeliveryQueue:\n    Type: AWS::SQS::Queue\n    Condition: Durable\n    DeletionPolicy: RetainExceptOnCreate",
        "  DeliveryQueue:\n    Type: AWS::SQS::Queue\n    Condition: Durable\n    DeletionPolicy: Retain",
        "DeliveryQueue: DeletionPolicy RetainExceptOnCreate",
    ),
    (
        "a function without its own role: SAM's role with its managed policies",
        "      Role: !GetAtt EventsRole.Arn\n",
        "",
        "EventsFunction (transformed): EventsFunctionRole has managed policies",
    ),
    (
        "a managed policy on a role",
        "      Description: The events function\n",
        "      Description: The events function\n      ManagedPolicyArns: [arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]\n",
        "EventsFunction (transformed): EventsRole has managed policies",
    ),
    (
        "logs written anywhere",
        "                Resource: !GetAtt EventsLogs.Arn",
        "                Resource: \"*\"",
        "EventsFunction (transformed): logs only to its own log group",
    ),
    (
        "SQS on a queue outside the stack",
        "                Resource:\n                  - !GetAtt DeliveryQueue.Arn\n                  - !GetAtt DeletionQueue.Arn\n              - Effect: Allow",
        "                Resource:\n                  - arn:aws:sqs:us-east-1:123456789012:someone-elses\n                  - !GetAtt DeletionQueue.Arn\n              - Effect: Allow",
        "RedeliverFunction (transformed): SQS only on the stack's queues",
    ),
    (
        "the FIFO deletion queue without its dead-letter queue",
        "      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt DeletionDeadLetterQueue.Arn\n        maxReceiveCount: 50\n",
        "",
        "DeletionQueue: redrive to DeletionDeadLetterQueue",
    ),
    (
        "a dead-letter queue any queue may redrive into",
        "      RedriveAllowPolicy:\n        redrivePermission: byQueue\n        sourceQueueArns:\n          - !Sub\n            - \"arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:delivery-${Id}\"",
        "      RedriveAllowPolicy:\n        redrivePermission: allowAll\n        sourceQueueArns:\n          - !Sub\n            - \"arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:delivery-${Id}\"",
        "DeadLetterQueue: RedriveAllowPolicy byQueue naming DeliveryQueue only",
    ),
    (
        "no age alarm on the deletion queue",
        "          Value: !GetAtt DeletionQueue.QueueName\n",
        "          Value: !GetAtt DeliveryQueue.QueueName\n",
        "an alarm on the DeletionQueue's oldest message",
    ),
    (
        "a created secret's generator edited",
        "GenerateStringKey: bearer_token\n        PasswordLength: 40",
        "GenerateStringKey: bearer_token\n        PasswordLength: 32",
        "IngestSecret: GenerateSecretString changed",
    ),
    (
        "Segment's role trusting a role Segment's docs do not name",
        "              AWS: !Ref SegmentPrincipal",
        "              AWS: !Sub arn:${AWS::Partition}:iam::595280932656:role/customer-lambda-prod-destination-access",
        "SegmentInvokeRole: trusts SegmentPrincipal with the external id only",
    ),
    (
        "throttling above what a new account can run",
        "    Default: 25\n    MinValue: 1\n    Description: >\n      Requests per second",
        "    Default: 500\n    MinValue: 1\n    Description: >\n      Requests per second",
        "ApiThrottlingRateLimit/BurstLimit: defaults sized",
    ),
    (
        "an http:// Amplitude URL",
        'AllowedPattern: "^$|^https://[A-Za-z0-9.-]+',
        'AllowedPattern: "^$|^https?://[A-Za-z0-9.-]+',
        "AmplitudeBaseUrl: https:// only",
    ),
    (
        "a partial secret ARN",
        'secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$"',
        'secret:[A-Za-z0-9/_+=.@-]+$"',
        "IngestSecretArn: validated as a full secret ARN",
    ),
    (
        "jobs kept longer than SQS keeps them",
        "    MaxValue: 1036800",
        "    MaxValue: 1209600",
        "DeliveryMaxAgeSeconds: at most 12 days",
    ),
    (
        "access logs without the integration's error and request id",
        ',"integrationRequestId":"$context.integration.requestId"',
        "",
        "Api: access log format with $context.integration.requestId",
    ),
    (
        "silence that alarms nobody",
        "      TreatMissingData: breaching",
        "      TreatMissingData: notBreaching",
        "NoTrafficAlarm",
    ),
    (
        "a log level that drops the metric lines",
        "    AllowedValues: [TRACE, DEBUG, INFO, WARN]",
        "    AllowedValues: [TRACE, DEBUG, INFO, WARN, ERROR]",
        "ApplicationLogLevel: at most WARN",
    ),
    (
        "refusals Segment drops without an alarm",
        "              MetricName: RequestsRefused",
        "              MetricName: Received",
        "RequestsRefusedAlarm: RequestsRefused of every ingest route",
    ),
]


class Rules(unittest.TestCase):
    def test_the_template_as_written_passes(self):
        self.assertEqual(check_template.check(TEMPLATE), [])

    def test_each_rule_catches_the_template_that_breaks_it(self):
        for what, old, new, expected in MUTATIONS:
            with self.subTest(what):
                self.assertIn(old, TEMPLATE, "the mutation's text is in the template")
                problems = check_template.check(TEMPLATE.replace(old, new, 1))
                self.assertTrue(
                    any(expected in p for p in problems),
                    f"{what}: expected {expected!r} among {problems}",
                )


if __name__ == "__main__":
    unittest.main()
