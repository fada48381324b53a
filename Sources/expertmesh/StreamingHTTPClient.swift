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
        guard let components = URLComponents(string: url), components.scheme == "http",
              let host = components.host else {
            throw CommandError("--server must be an http URL such as http://127.0.0.1:8080, got '\(url)'")
        }
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        port = components.port ?? 80
    }

    /// A connected TCP socket to the first address of host:port that answers (IPv4 or IPv6).
    private func connectSocket() throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else {
            throw CommandError("cannot resolve '\(host)'")
        }
        defer { freeaddrinfo(list) }
        var reason = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let address = entry {
            let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
            if fd >= 0 {
                if connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 { return fd }
                reason = String(cString: strerror(errno))
                close(fd)
            }
            entry = address.pointee.ai_next
        }
        throw CommandError("cannot connect to \(host):\(port): \(reason); is the server running?")
    }

    /// Sends `body` to `path`; calls `onEvent` with each `data:` payload and the time it arrived.
    /// Returns the HTTP status. A non-200 answer's body is returned as one event.
    func post(_ path: String, body: Data, onEvent: (String, ContinuousClock.Instant) -> Void) throws -> Int {
        let fd = try connectSocket()
        defer { close(fd) }
        let hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        var request = Data(("POST \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nContent-Type: application/json\r\n"
                            + "Accept: text/event-stream\r\nContent-Length: \(body.count)\r\nConnection: close\r\n"
                            + (apiKeyFromEnvironment.map { "Authorization: Bearer \($0)\r\n" } ?? "") + "\r\n").utf8)
        request.append(body)
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == request.count else { throw CommandError("could not send the request to \(host):\(port)") }

        var raw = Data()
        var buffer = Data()
        var chunk = [UInt8](repeating: 0, count: 16384)
        var status = 0
        var headersDone = false
        var chunked = false
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { break }
            let now = ContinuousClock.now
            raw.append(contentsOf: chunk[0..<n])
            if !headersDone {
                guard let end = raw.range(of: Data("\r\n\r\n".utf8)) else { continue }
                let headers = String(decoding: raw[..<end.lowerBound], as: UTF8.self)
                let statusLine = headers.split(separator: " ")
                status = statusLine.count > 1 ? Int(statusLine[1]) ?? 0 : 0
                chunked = headers.lowercased().contains("transfer-encoding: chunked")
                raw.removeSubrange(..<end.upperBound)
                headersDone = true
            }
            if chunked {
                Self.dechunk(&raw, into: &buffer)
            } else {
                buffer.append(raw)
                raw.removeAll()
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

    /// Moves every complete chunk of a `Transfer-Encoding: chunked` body from `raw` to `body`
    /// ("<hex size>\r\n<bytes>\r\n" each); an incomplete one stays in `raw` for the next read.
    static func dechunk(_ raw: inout Data, into body: inout Data) {
        while let lineEnd = raw.range(of: Data("\r\n".utf8)) {
            let sizeText = String(decoding: raw[raw.startIndex..<lineEnd.lowerBound], as: UTF8.self)
            guard let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16) else { return }
            let start = lineEnd.upperBound
            guard raw.distance(from: start, to: raw.endIndex) >= size + 2 else { return }
            let end = raw.index(start, offsetBy: size)
            body.append(raw[start..<end])
            raw.removeSubrange(raw.startIndex..<raw.index(end, offsetBy: 2))
            if size == 0 { return }
        }
    }
}
