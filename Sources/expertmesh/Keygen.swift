import ArgumentParser
import Foundation
import Logging
import MeshCoordinator
import MeshTransport

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a CurveZMQ key pair: PATH.key (public) and PATH.key_secret (secret, mode 0600).",
        discussion: """
        The files are czmq's certificate format. Give the coordinator its .key_secret (--curve-secret-key) and \
        a directory of the workers' public .key files (--authorized-keys); give each worker its own \
        .key_secret and the coordinator's public .key (--coordinator-key).

        Examples:
          expertmesh keygen --out keys/coordinator
          expertmesh keygen --out keys/workers/shard-1
          expertmesh coordinator --model DIR \\
              --curve-secret-key keys/coordinator.key_secret \\
              --authorized-keys keys/workers
          expertmesh worker --coordinator tcp://10.0.0.1:5555 --model DIR \\
              --curve-secret-key keys/workers/shard-1.key_secret \\
              --coordinator-key keys/coordinator.key
        """)

    @Option(help: "Path of the key files, without extension.")
    var out: String

    @Flag(help: "Replace existing key files.")
    var force = false

    func run() throws {
        try reportingErrors {
            for path in [out + ".key", out + ".key_secret"] where FileManager.default.fileExists(atPath: path) && !force {
                throw CommandError("\(path) exists: pass --force to replace it (workers holding the old key must get the new one)")
            }
            let directory = URL(fileURLWithPath: out).deletingLastPathComponent()
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let certificate = try CurveCertificate.generate()
            try certificate.write(to: out)
            print("wrote \(out).key (public key \(certificate.publicKey)) and \(out).key_secret (keep it private)")
        }
    }
}

/// Plain TCP where other hosts can connect needs `--insecure`: it lets anyone who reaches the port
/// join or read the activations.
struct InsecureOption: ParsableArguments {
    @Flag(help: "Allow plain TCP (no CURVE keys) on an address other hosts can reach, on a network you trust; warns at start.")
    var insecure = false

    /// Refuses a non-loopback `endpoint` without keys unless --insecure; returns a warning to log, if any.
    func check(_ endpoint: String, option: String, keyed: Bool, role: String) throws -> String? {
        guard !keyed, !Endpoint.isLoopback(endpoint) else { return nil }
        guard insecure else {
            throw ValidationError("""
                \(option) \(endpoint) can be reached from other hosts, and without CURVE keys anyone who reaches it \
                \(role): give keys (see `expertmesh keygen --help`), or --insecure on a network you trust
                """)
        }
        return "plain TCP on \(endpoint) (--insecure): anyone who reaches it \(role); give CURVE keys to prevent it"
    }
}

/// `--curve-secret-key` and the peer's keys, for the coordinator and the workers.
struct CoordinatorCurveOptions: ParsableArguments {
    @Option(help: ArgumentHelp("This coordinator's secret key file (from `expertmesh keygen`): CURVE on the workers' port.",
                               valueName: "FILE"))
    var curveSecretKey: String?

    @Option(help: ArgumentHelp("""
        Directory of the public .key files of the workers allowed to join (re-read on SIGHUP); with --curve-secret-key.
        """, valueName: "DIR"))
    var authorizedKeys: String?

    func validate() throws {
        guard (curveSecretKey == nil) == (authorizedKeys == nil) else {
            throw ValidationError("--curve-secret-key and --authorized-keys go together: give both, or neither")
        }
    }

    /// The security settings, with SIGHUP re-reading the authorized keys.
    func security(logger: Logger) throws -> Cluster.Security? {
        guard let curveSecretKey, let authorizedKeys else { return nil }
        let keys = try AuthorizedKeys(directory: authorizedKeys)
        ReloadSignal.onHangup {
            do {
                let count = try keys.reload()
                logger.notice("SIGHUP: \(count) authorized worker keys in \(authorizedKeys)")
            } catch {
                logger.error("SIGHUP: kept the previous authorized keys: \(error)")
            }
        }
        return Cluster.Security(certificate: try CurveCertificate.readSecret(curveSecretKey), authorizedKeys: keys)
    }
}

struct WorkerCurveOptions: ParsableArguments {
    @Option(help: ArgumentHelp("This worker's secret key file (from `expertmesh keygen`): CURVE to the coordinator.",
                               valueName: "FILE"))
    var curveSecretKey: String?

    @Option(help: ArgumentHelp("The coordinator's public key file; with --curve-secret-key.", valueName: "FILE"))
    var coordinatorKey: String?

    func validate() throws {
        guard (curveSecretKey == nil) == (coordinatorKey == nil) else {
            throw ValidationError("--curve-secret-key and --coordinator-key go together: give both, or neither")
        }
    }

    func curve() throws -> (certificate: CurveCertificate, coordinatorKey: String)? {
        guard let curveSecretKey, let coordinatorKey else { return nil }
        return (try CurveCertificate.readSecret(curveSecretKey), try CurveCertificate.read(coordinatorKey).publicKey)
    }
}
