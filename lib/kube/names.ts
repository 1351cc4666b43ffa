// Validates the names users type: cluster names (DNS-1123 labels) and user or group names.
import { BadRequest } from "../errors/index.ts";

/** DNS-1123 label, ASCII only: look-alike letters, dots, slashes and escapes never match. */
const CLUSTER_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** C0 controls, DEL and C1 controls. */
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;
const MAX_SUBJECT_NAME_LENGTH = 256;

/** Returns `name` if it is a valid cluster name; throws BadRequest otherwise. */
export function validateClusterName(name: string): string {
  if (typeof name !== "string" || !CLUSTER_NAME.test(name)) {
    throw new BadRequest(
      `invalid cluster name ${quote(name)}: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
    );
  }
  return name;
}

/** Returns `name` if it is a usable Kubernetes user name (1-256 chars, no control chars, not `system:...`); throws BadRequest. */
export function validateUserName(name: string): string {
  return validateSubjectName(name, "user");
}

/** Same rules as validateUserName, for group names. */
export function validateGroupName(name: string): string {
  return validateSubjectName(name, "group");
}

function validateSubjectName(name: string, what: "user" | "group"): string {
  const problem = subjectNameProblem(name);
  if (problem) throw new BadRequest(`invalid ${what} name ${quote(name)}: ${problem}`);
  return name;
}

/**
 * Why `name` cannot be a user or group a token names and the agent impersonates, or undefined.
 * Leading or trailing white space is refused, not trimmed: Go's net/http trims it from header
 * values, so " system:masters" in a token would be system:masters at the API server; and the
 * `system:` prefix (any casing) is Kubernetes' own (system:masters, system:serviceaccount:...).
 */
export function subjectNameProblem(name: unknown): string | undefined {
  if (typeof name !== "string" || name.length === 0 || name.length > MAX_SUBJECT_NAME_LENGTH || CONTROL_CHARS.test(name)) {
    return `use 1-${MAX_SUBJECT_NAME_LENGTH} characters without control characters`;
  }
  if (name.trim() !== name) return "a name may not start or end with white space";
  if (/^system:/i.test(name)) return 'names starting with "system:" are Kubernetes\' own and never put in a token';
  return undefined;
}

/** JSON quoting escapes control characters; long input is cut so messages stay readable. */
function quote(value: unknown): string {
  const text = typeof value === "string" ? value : String(value);
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);
}

/**
 * Up to three names in `known` close to `wanted` (a typo, a missing suffix), nearest first, for
 * "did you mean" (cluster names, flags): edit
 * distance (a swap of two letters counting as one) at most a third of the name's length (at least
 * 1), or one containing the other.
 */
export function suggestNames(wanted: string, known: readonly string[]): string[] {
  const limit = Math.max(1, Math.floor(wanted.length / 3));
  return known
    .map((name) => ({ name, distance: editDistance(wanted, name), contains: name.includes(wanted) || wanted.includes(name) }))
    .filter((c) => c.name !== wanted && (c.distance <= limit || c.contains))
    .sort((a, b) => a.distance - b.distance || a.name.localeCompare(b.name))
    .slice(0, 3)
    .map((c) => c.name);
}

/**
 * Optimal string alignment distance: Levenshtein's insertions, deletions and substitutions, plus
 * two neighbouring letters swapped as one edit (Damerau), the commonest typo ("prdo" for "prod",
 * which plain Levenshtein counts as two). O(a*b) for short names.
 */
function editDistance(a: string, b: string): number {
  let beforePrevious: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      let d = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, beforePrevious[j - 2]! + 1);
      current[j] = d;
    }
    beforePrevious = previous;
    previous = current;
  }
  return previous[b.length]!;
}
