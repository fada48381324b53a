import Foundation

/// Python's `datetime.strftime` in the C locale (English names), for `strftime_now`. Supports the directives
/// chat templates use (`%d %b %Y`, `%B %d, %Y`, `%Y-%m-%d` ...) plus glibc's `%-d` (no padding).
enum Strftime {
    private static let weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    private static let months = ["January", "February", "March", "April", "May", "June", "July", "August",
                                 "September", "October", "November", "December"]

    static func format(_ date: Date, _ pattern: String) throws -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .current
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let dayOfYear = calendar.ordinality(of: .day, in: .year, for: date) ?? 1
        let (year, month, day) = (parts.year ?? 1970, parts.month ?? 1, parts.day ?? 1)
        let (hour, minute, second) = (parts.hour ?? 0, parts.minute ?? 0, parts.second ?? 0)
        let weekday = weekdays[(parts.weekday ?? 1) - 1]
        let monthName = months[month - 1]
        var result = ""
        var characters = Array(pattern).makeIterator()
        while let character = characters.next() {
            guard character == "%" else {
                result.append(character)
                continue
            }
            guard var directive = characters.next() else {
                result.append("%")
                break
            }
            var padded = true
            if directive == "-" {
                padded = false
                guard let next = characters.next() else { throw unsupported("%-") }
                directive = next
            }
            func number(_ value: Int, _ width: Int) -> String {
                let digits = String(value)
                return padded ? String(repeating: "0", count: max(width - digits.count, 0)) + digits : digits
            }
            switch directive {
            case "a": result += String(weekday.prefix(3))
            case "A": result += weekday
            case "b", "h": result += String(monthName.prefix(3))
            case "B": result += monthName
            case "d": result += number(day, 2)
            case "e": result += padded && day < 10 ? " \(day)" : String(day)
            case "H": result += number(hour, 2)
            case "I": result += number(hour % 12 == 0 ? 12 : hour % 12, 2)
            case "j": result += number(dayOfYear, 3)
            case "m": result += number(month, 2)
            case "M": result += number(minute, 2)
            case "p": result += hour < 12 ? "AM" : "PM"
            case "S": result += number(second, 2)
            case "y": result += number(year % 100, 2)
            case "Y": result += String(year)
            case "%": result += "%"
            default: throw unsupported("%" + (padded ? "" : "-") + String(directive))
            }
        }
        return result
    }

    private static func unsupported(_ directive: String) -> JinjaError {
        .unsupported("the strftime directive '\(directive)'")
    }
}
