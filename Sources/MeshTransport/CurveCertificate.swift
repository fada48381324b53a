import CZeroMQ
import Foundation

/// A CurveZMQ key pair in Z85 text (40 characters each), stored in the certificate files czmq
/// writes: `PATH.key` holds the public key, `PATH.key_secret` (mode 0600) both.
public struct CurveCertificate: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String?

    public init(publicKey: String, secretKey: String?) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A new key pair from libzmq (libsodium underneath).
    public static func generate() throws -> CurveCertificate {
        var publicKey = [CChar](repeating: 0, count: 41), secretKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicKey, &secretKey) == 0 else {
            throw TransportError.last("zmq_curve_keypair (is libzmq built with CURVE?)")
        }
        return CurveCertificate(publicKey: String(cString: publicKey), secretKey: String(cString: secretKey))
    }

    /// Writes `base.key` and `base.key_secret` (the secret one readable by its owner only).
    public func write(to base: String) throws {
        guard let secretKey else { throw CurveError("a public certificate has no secret key to write") }
        let stamp = ISO8601DateFormatter().string(from: Date())
        let publicText = """
            #   ****  Generated on \(stamp) by expertmesh keygen  ****
            #   ZeroMQ CURVE Public Certificate
            #   Exchange securely, or use a secure mechanism to verify the contents
            #   of this file after exchange.

            metadata
            curve
                public-key = "\(publicKey)"

            """
        let secretText = """
            #   ****  Generated on \(stamp) by expertmesh keygen  ****
            #   ZeroMQ CURVE **Secret** Certificate
            #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

            metadata
            curve
                public-key = "\(publicKey)"
                secret-key = "\(secretKey)"

            """
        let secretPath = base + ".key_secret"
        // Created with mode 0600 before any byte of the secret is written.
        FileManager.default.createFile(atPath: secretPath, contents: nil, attributes: [.posixPermissions: 0o600])
        guard let handle = FileHandle(forWritingAtPath: secretPath) else { throw CurveError("cannot write \(secretPath)") }
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(secretText.utf8))
        try handle.close()
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: secretPath)
        // Not `atomically`: Foundation would leave its staging folder in /tmp (keygen can simply run again).
        try publicText.write(toFile: base + ".key", atomically: false, encoding: .utf8)
    }

    /// Reads a certificate file (public or secret) in czmq's format.
    public static func read(_ path: String) throws -> CurveCertificate {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CurveError("cannot read the key file \(path)")
        }
        func value(_ name: String) -> String? {
            for line in text.split(whereSeparator: \.isNewline) {
                let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if parts.count == 2, parts[0] == name {
                    return parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
                }
            }
            return nil
        }
        guard let publicKey = value("public-key"), isZ85Key(publicKey) else {
            throw CurveError("\(path) holds no public-key = \"…\" of 40 Z85 characters: is it a key file from `expertmesh keygen`?")
        }
        let secretKey = value("secret-key")
        if let secretKey, !isZ85Key(secretKey) { throw CurveError("\(path): its secret-key is not 40 Z85 characters") }
        return CurveCertificate(publicKey: publicKey, secretKey: secretKey)
    }

    /// Reads a secret certificate: its file must hold the secret key and be private to its owner.
    public static func readSecret(_ path: String) throws -> CurveCertificate {
        let certificate = try read(path)
        guard certificate.secretKey != nil else {
            throw CurveError("\(path) holds no secret-key: pass the .key_secret file, not the public .key")
        }
        let mode = (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? 0
        guard mode & 0o077 == 0 else {
            throw CurveError("\(path) is readable by others (mode \(String(mode, radix: 8))): chmod 600 \(path)")
        }
        return certificate
    }

    /// The public keys of every `*.key` file in a directory (key → file name).
    public static func publicKeys(inDirectory directory: String) throws -> [String: String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            throw CurveError("cannot read the authorized keys directory \(directory)")
        }
        var keys: [String: String] = [:]
        for name in names.sorted() where name.hasSuffix(".key") {
            keys[try read(directory + "/" + name).publicKey] = name
        }
        return keys
    }

    static func isZ85Key(_ text: String) -> Bool {
        let alphabet = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
        return text.count == 40 && text.allSatisfy(alphabet.contains)
    }

    /// A 32-byte binary key as Z85 text.
    public static func z85(_ bytes: [UInt8]) -> String? {
        guard bytes.count == 32 else { return nil }
        var text = [CChar](repeating: 0, count: 41)
        guard zmq_z85_encode(&text, bytes, 32) != nil else { return nil }
        return String(cString: text)
    }
}

public struct CurveError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
