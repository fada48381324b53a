/// What a ZeroMQ endpoint exposes.
public enum Endpoint {
    /// True when only this machine can reach the endpoint: tcp on 127.0.0.0/8, ::1 or localhost,
    /// ipc or inproc. A wildcard, another address or a host name may be reached from elsewhere.
    public static func isLoopback(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        let address = endpoint.dropFirst("tcp://".count)
        // A connecting endpoint may name its source first: "tcp://source;host:port".
        let host = address.split(separator: ";").last.map(String.init) ?? String(address)
        return host.hasPrefix("127.") || host.hasPrefix("[::1]:") || host.hasPrefix("localhost:")
    }
}
