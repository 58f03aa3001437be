/** `heartline publish <channel> <json>`: one POST /api/publish. */
export async function publishCommand(channel: string, json: string, opts: { url: string; apiKey?: string }): Promise<number> {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch {
    process.stderr.write(JSON.stringify({ error: { code: "bad_json", message: "<json> is not valid JSON (quote strings: '\"hi\"')" } }) + "\n");
    return 2;
  }
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (opts.apiKey) headers.Authorization = `Bearer ${opts.apiKey}`;
  let res: Response;
  try {
    res = await fetch(new URL("/api/publish", opts.url), { method: "POST", headers, body: JSON.stringify({ channel, data }) });
  } catch (err) {
    process.stderr.write(JSON.stringify({ error: { code: "unreachable", message: `cannot reach ${opts.url}: ${(err as Error).message}` } }) + "\n");
    return 1;
  }
  const text = await res.text();
  (res.ok ? process.stdout : process.stderr).write(text.trimEnd() + "\n");
  return res.ok ? 0 : 1;
}
