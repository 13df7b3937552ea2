package filter

import "fmt"

// MaxDepth is the deepest nesting of brackets and prefix operators an
// expression may have. expr-lang's parser and checker recurse once per
// level, and a Go stack overflow cannot be recovered: a filter of 500,000
// "(" crashed the backend at every start. Real filters nest a handful of
// levels.
const MaxDepth = 64

// MaxSource is the longest expression source accepted (16 KiB): a bound on
// the work of compiling it and on the depth of a left-deep chain such as
// "a + a + a …", which no bracket count sees.
const MaxSource = 16 << 10

// CheckDepth refuses an expression whose nesting exceeds MaxDepth or whose
// source exceeds MaxSource, before any recursive parser sees it. It scans
// the text once: string literals are skipped, brackets and runs of prefix
// operators (!, unary - and +, not) count as levels.
func CheckDepth(src string) error {
	if len(src) > MaxSource {
		return &Error{Line: 1, Message: fmt.Sprintf("expression is %d bytes, at most %d", len(src), MaxSource)}
	}
	depth, unary := 0, 0
	operand := false // the previous token ends an operand (so - is binary)
	line, col := 1, 0
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '\n':
			line, col = line+1, -1
		case c == '"' || c == '\'' || c == '`':
			i = skipString(src, i)
			operand, unary = true, 0
		case c == '(' || c == '[' || c == '{':
			depth++
			operand = false
		case c == ')' || c == ']' || c == '}':
			depth--
			operand, unary = true, 0
		case c == '!' && (i+1 == len(src) || src[i+1] != '='):
			unary++
		case (c == '-' || c == '+') && !operand:
			unary++
		case c == 'n' && !operand && isWord(src, i, "not"):
			unary++
			i += 2
		case c == ' ' || c == '\t' || c == '\r':
		case isIdent(c):
			for i+1 < len(src) && isIdent(src[i+1]) {
				i++
			}
			operand, unary = true, 0
		default:
			operand = false
		}
		col++
		if depth+unary > MaxDepth {
			return &Error{Line: line, Column: col, Message: fmt.Sprintf("expression is nested deeper than %d levels", MaxDepth)}
		}
	}
	return nil
}

// skipString returns the index of the quote closing the literal that opens
// at i (or the last index when it is unterminated: the parser reports it).
func skipString(src string, i int) int {
	q := src[i]
	for j := i + 1; j < len(src); j++ {
		switch {
		case src[j] == '\\' && q != '`':
			j++
		case src[j] == q:
			return j
		}
	}
	return len(src) - 1
}

func isIdent(c byte) bool {
	return c == '_' || c == '$' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// isWord reports whether the word w starts at i and stands alone.
func isWord(src string, i int, w string) bool {
	if len(src)-i < len(w) || src[i:i+len(w)] != w {
		return false
	}
	return i+len(w) == len(src) || !isIdent(src[i+len(w)])
}
