import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking HTTP/1.1 client for one POST whose answer is server-sent events, reading each
/// `data:` line as it arrives so a load generator can time every token. One per thread.
struct StreamingHTTPClient {
    let host: String
    let port: Int

    /// "http://HOST:PORT" (a trailing slash or path is ignored).
    init(url: String) throws {
        guard let components = URLComponents(string: url), components.scheme == "http", let host = components.host else {
            throw CommandError("--server must be an http URL such as http://127.0.0.1:8080, got '\(url)'")
        }
        self.host = host == "localhost" ? "127.0.0.1" : host
        port = components.port ?? 80
    }

    /// Sends `body` to `path`; calls `onEvent` with each `data:` payload and the time it arrived.
    /// Returns the HTTP status. A non-200 answer's body is returned as one event.
    func post(_ path: String, body: Data, onEvent: (String, ContinuousClock.Instant) -> Void) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CommandError("cannot create a socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw CommandError("'\(host)' is not an IPv4 address; use e.g. http://127.0.0.1:8080")
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw CommandError("cannot connect to \(host):\(port): \(String(cString: strerror(errno)))") }
        var request = Data("POST \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8)
        request.append(body)
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == request.count else { throw CommandError("could not send the request to \(host):\(port)") }

        var buffer = Data()
        var chunk = [UInt8](repeating: 0, count: 16384)
        var status = 0
        var headersDone = false
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { break }
            let now = ContinuousClock.now
            buffer.append(contentsOf: chunk[0..<n])
            if !headersDone {
                guard let end = buffer.range(of: Data("\r\n\r\n".utf8)) else { continue }
                let statusLine = String(decoding: buffer[..<end.lowerBound], as: UTF8.self).split(separator: " ")
                status = statusLine.count > 1 ? Int(statusLine[1]) ?? 0 : 0
                buffer.removeSubrange(..<end.upperBound)
                headersDone = true
            }
            guard status == 200 else { continue }
            while let end = buffer.range(of: Data("\n\n".utf8)) {
                let event = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
                buffer.removeSubrange(..<end.upperBound)
                if event.hasPrefix("data: ") { onEvent(String(event.dropFirst(6)), now) }
            }
        }
        if status != 200 { onEvent(String(decoding: buffer, as: UTF8.self), .now) }
        return status
    }
}
