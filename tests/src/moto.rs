//! moto's server as AWS Secrets Manager, SQS and DynamoDB on loopback, installed by the test
//! command into `.venv` (PyPI `moto[server]`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::workspace_root;

/// The loopback-only AWS environment every process that builds an SDK client gets.
pub const REGION: &str = "us-east-1";

pub struct Moto {
    child: Child,
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The moto server binary: `$MOTO_SERVER`, or the project's `.venv/bin/moto_server`.
pub fn binary() -> Option<PathBuf> {
    std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .or_else(|| Some(workspace_root().join(".venv/bin/moto_server")))
        .filter(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// moto's server answering one request at a time: its app under werkzeug's server without
/// threads (`moto_server` always starts it threaded). Run by the interpreter `moto_server`'s
/// own `#!` line names, so it is the same moto.
const SERIAL_SERVER: &str = "import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
run_simple(sys.argv[1], int(sys.argv[2]), DomainDispatcherApplication(create_backend_app), threaded=False, request_handler=MotoRequestHandler)
";

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub async fn start() -> Option<Moto> {
        let bin = binary()?;
        let port = free_port();
        let mut command = Command::new(bin);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        Some(Moto::started(command, port).await)
    }

    /// Starts moto answering one request at a time. moto's threaded server has no lock between
    /// a conditional write's check and its write, so two racing writes can both pass, which
    /// DynamoDB never allows; one request at a time, every conditional write is atomic, as in
    /// DynamoDB. Not for SQS long polls: one would hold up every other request.
    pub async fn start_serial() -> Option<Moto> {
        let bin = binary()?;
        // Installed but not a script whose interpreter can be found: a failure, not a skip.
        let script = std::fs::read_to_string(&bin).expect("moto_server is readable");
        let python = script
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("#!"))
            .expect("moto_server starts with a #! line naming its Python")
            .trim()
            .to_owned();
        let port = free_port();
        let mut command = Command::new(python);
        command
            .args(["-c", SERIAL_SERVER, "127.0.0.1", &port.to_string()])
            .env("MOTO_PORT", port.to_string());
        Some(Moto::started(command, port).await)
    }

    async fn started(mut command: Command, port: u16) -> Moto {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let url = format!("http://127.0.0.1:{port}");
        let moto = Moto { child, url };
        amplitude_client::install_crypto_provider();
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client
                .get(format!("{}/moto-api/", moto.url))
                .send()
                .await
                .is_ok()
            {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto did not start on {}", moto.url);
    }

    /// An SQS client pointed at this moto with dummy credentials.
    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }

    async fn sdk_config(&self) -> aws_config::SdkConfig {
        let creds = aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        );
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(pipeline::aws_http_client())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(creds)
            .endpoint_url(&self.url)
            .load()
            .await
    }

    /// A Secrets Manager client pointed at this moto with dummy credentials.
    pub async fn client(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk_config().await)
    }

    pub async fn put_secret(&self, name: &str, value: &str) {
        self.client()
            .await
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .expect("create secret");
    }

    /// A DynamoDB client pointed at this moto with dummy credentials.
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config().await)
    }

    /// Creates the sessions' table as `template.yaml` does (key `k`, on-demand, time-to-live
    /// on `expires`).
    pub async fn create_sessions_table(&self, name: &str) {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            TimeToLiveSpecification,
        };
        let client = self.dynamodb().await;
        client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("k")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("k")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("create the sessions table");
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires")
                    .enabled(true)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("time-to-live on expires");
    }

    /// The environment for a process that reads secrets from this moto, and nothing else.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("HOME", "/nonexistent".into()),
        ]
    }
}
