import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct HTTPServerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A small blocking HTTP/1.1 server: one accept thread, one thread per connection, one
/// request per connection (`Connection: close`). Enough for the API and health checks; a
/// malformed request gets a 400 and never affects other connections. (The OpenAI API issue
/// replaces it with Hummingbird.)
public final class HTTPServer: @unchecked Sendable {
    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var headers: [String: String]
        public var body: Data
        /// True once the client has closed its side (it will not read the answer).
        public var peerClosed: @Sendable () -> Bool = { false }
    }

    public struct Response: Sendable {
        public enum Body: Sendable {
            case data(Data)
            /// Written piece by piece after the headers; `write` returns false once the client is gone.
            case stream(@Sendable (_ write: (Data) -> Bool) -> Void)
        }
        public var status: Int
        public var contentType = "application/json"
        public var headers: [(String, String)] = []
        public var body: Body

        public init(status: Int, contentType: String = "application/json", headers: [(String, String)] = [], body: Body) {
            self.status = status
            self.contentType = contentType
            self.headers = headers
            self.body = body
        }
        public static func json(_ status: Int, _ object: Any, headers: [(String, String)] = []) -> Response {
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
            return Response(status: status, headers: headers, body: .data(data))
        }
        /// OpenAI's error shape: {"error": {"message", "type", "param", "code"}}.
        public static func error(_ status: Int, _ message: String, type: String = "invalid_request_error",
                                 headers: [(String, String)] = []) -> Response {
            .json(status, ["error": ["message": message, "type": type, "param": NSNull(), "code": status]], headers: headers)
        }
    }

    public static let maxBodyBytes = 16 << 20
    private let listener: Int32
    public let port: Int
    private let handler: @Sendable (Request) -> Response

    /// Binds `host:port` (port 0 picks a free one).
    public init(host: String, port: Int, handler: @escaping @Sendable (Request) -> Response) throws {
        self.handler = handler
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        guard listener >= 0 else { throw HTTPServerError("cannot create the HTTP socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else {
            close(listener)
            throw HTTPServerError("--http: '\(host)' is not an IPv4 address; use e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 64) == 0 else {
            let reason = String(cString: strerror(errno))
            close(listener)
            throw HTTPServerError("cannot listen for HTTP on \(host):\(port): \(reason)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        self.port = Int(UInt16(bigEndian: actual.sin_port))
    }

    public func start() {
        let thread = Thread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 { if errno == EINTR { continue } else { return } }
                let connection = Thread { [self] in serve(client) }
                connection.start()
            }
        }
        thread.name = "http-accept"
        thread.start()
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let response: Response
        switch readRequest(client) {
        case .success(var request):
            request.peerClosed = { Self.peerClosed(client) }
            response = handler(request)
        case .failure(let error): response = .error(400, error.description)
        }
        write(response, to: client)
    }

    private func readRequest(_ client: Int32) -> Result<Request, HTTPServerError> {
        var buffer = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        let separator = Data("\r\n\r\n".utf8)
        while buffer.range(of: separator) == nil {
            let n = recv(client, &chunk, chunk.count, 0)
            guard n > 0 else { return .failure(HTTPServerError("connection closed before the request headers ended")) }
            buffer.append(contentsOf: chunk[0..<n])
            if buffer.count > 64 * 1024, buffer.range(of: separator) == nil { return .failure(HTTPServerError("request headers are larger than 64 KiB")) }
        }
        let headerEnd = buffer.range(of: separator)!
        let headText = String(decoding: buffer[..<headerEnd.lowerBound], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count >= 2 else { return .failure(HTTPServerError("malformed request line")) }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            return .failure(HTTPServerError("chunked request bodies are not supported: send Content-Length"))
        }
        let length = Int(headers["content-length"] ?? "0") ?? -1
        guard length >= 0, length <= Self.maxBodyBytes else {
            return .failure(HTTPServerError("Content-Length must be a number up to \(Self.maxBodyBytes) bytes"))
        }
        var body = Data(buffer[headerEnd.upperBound...])
        if headers["expect"]?.lowercased() == "100-continue", body.count < length {
            // curl sends large bodies only after this (or after a 1 s pause).
            _ = Self.send(Data("HTTP/1.1 100 Continue\r\n\r\n".utf8), to: client)
        }
        while body.count < length {
            let n = recv(client, &chunk, min(chunk.count, length - body.count), 0)
            guard n > 0 else { return .failure(HTTPServerError("connection closed after \(body.count) of \(length) body bytes")) }
            body.append(contentsOf: chunk[0..<n])
        }
        return .success(Request(method: String(requestLine[0]), path: String(requestLine[1]), headers: headers, body: body.prefix(length)))
    }

    /// The client closed its end: poll says hang-up, or readable with nothing to read.
    private static func peerClosed(_ client: Int32) -> Bool {
        let readHangUp: Int16 = 0x2000   // POLLRDHUP (Linux), not exported to Swift
        var descriptor = pollfd(fd: client, events: Int16(POLLIN) | readHangUp, revents: 0)
        guard poll(&descriptor, 1, 0) > 0 else { return false }
        if descriptor.revents & (readHangUp | Int16(POLLHUP) | Int16(POLLERR)) != 0 { return true }
        var byte: UInt8 = 0
        return recv(client, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0
    }

    private static let reasons = [200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
                                  413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
                                  503: "Service Unavailable"]

    private func write(_ response: Response, to client: Int32) {
        var head = "HTTP/1.1 \(response.status) \(Self.reasons[response.status] ?? "Status")\r\nContent-Type: \(response.contentType)\r\n"
        for (name, value) in response.headers { head += "\(name): \(value)\r\n" }
        switch response.body {
        case .data(let body):
            var data = Data((head + "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n").utf8)
            data.append(body)
            _ = Self.send(data, to: client)
        case .stream(let produce):
            // No length: the body ends when the connection closes (HTTP/1.1 with Connection: close).
            guard Self.send(Data((head + "Cache-Control: no-cache\r\nConnection: close\r\n\r\n").utf8), to: client) else { return }
            produce { Self.send($0, to: client) }
        }
    }

    private static func send(_ data: Data, to client: Int32) -> Bool {
        data.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = Glibc.send(client, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                if n <= 0 { return false }
                sent += n
            }
            return true
        }
    }
}
