/**
 * Presence in the client (SPEC §9): the members of one channel, kept from
 * the server's events. A snapshot replaces the list, a join or a leave edits
 * it; so the list is always the server's once the events have arrived.
 */
import type { PresenceFrame, PresenceMember } from "./types.js";

/** Members by identity, as the server keys them: the user (null as "") and the client id (which has no comma). */
export type Members = Map<string, PresenceMember>;

const memberKey = (m: PresenceMember): string => [m.user, m.client] + "";

/**
 * Applies `f` to a channel's `members` (undefined until a snapshot came),
 * then tells the change, so that a listener reads the new list: the whole
 * list for a snapshot, the member for a join or leave. A join or leave
 * before any snapshot is ignored: it could not be placed in a list.
 */
export function applyPresence(at: { members?: Members }, f: PresenceFrame, tell: (type: "presence" | "join" | "leave", value: never) => void): void {
  const members = at.members;
  if (f.type === "presence") {
    // The whole list, after every (re)subscribe: it replaces what was kept. A list that is no list of members is dropped.
    try {
      at.members = new Map(f.members!.map((m) => [memberKey(m), m]));
    } catch {
      return;
    }
    tell("presence", [...at.members.values()] as never);
  } else if (members) {
    const { type, channel, ...m } = f as PresenceMember & PresenceFrame;
    if (type === "join") members.set(memberKey(m), m);
    else members.delete(memberKey(m));
    tell(type, m as never);
  }
}
