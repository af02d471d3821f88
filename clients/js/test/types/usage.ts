// Type-checked (tsc --noEmit, test/types.test.js), never run: the client as a TypeScript user
// writes it, imported by the package's own name so package.json's "exports"/"types" are checked
// too. Each @ts-expect-error is a misuse the types must refuse.
import {
  connect, RealtimeClient, RealtimeError, State, TimeoutError, UnauthorizedError,
  backoffDelay, closeDecision, type ClientState, type Publication, type SubscribedInfo,
} from "uws-py-client";

interface ChatLine { name: string; text: string }

export async function chat(url: string): Promise<number> {
  const client = await connect(url, {
    getToken: async () => {
      const response = await fetch("/token");
      if (response.status === 401) throw new UnauthorizedError();
      return response.text();
    },
    minReconnectDelay: 250,
    maxQueue: 10,
  });
  const lines: string[] = [];
  const subscription = client.subscribe<ChatLine>("chat.lobby", (publication: Publication<ChatLine>) => {
    lines.push(`${publication.data.name}: ${publication.data.text}`);
    const offset: number | undefined = publication.offset;
    void offset;
  });
  const info: SubscribedInfo = await subscription.ready;
  if (info.wasRecovering && !info.recovered) lines.push("(missed some)");
  subscription.on("gap", (gap) => lines.push(`lost after ${gap.previous.offset}`));
  const stop: () => void = client.on("disconnected", ({ code, delay, wasConnected }) => {
    if (wasConnected) lines.push(`lost (${code}), again in ${Math.round(delay)} ms`);
  });
  stop();
  client.on("state", (state: ClientState, previous) => lines.push(`${previous} -> ${state}`));
  const published = await client.publish("chat.lobby", { name: "ada", text: "hi" }, { echo: true });
  const offset: number | undefined = published.offset;
  const history = await client.history("chat.lobby", { limit: 10, since: { epoch: "e", offset: offset ?? 0 } });
  lines.push(...history.publications.map((publication) => String(publication.data)));
  try {
    const reply = await client.request("NICK", { name: "ada" }, { timeout: 2000 });
    lines.push(reply.type);
  } catch (error) {
    if (error instanceof TimeoutError) lines.push("slow");
    else if (error instanceof RealtimeError) lines.push(error.code);
  }
  const { rtt } = await client.ping();
  if (client.state === State.CONNECTED) client.close();
  await subscription.unsubscribe();

  // @ts-expect-error: an unknown event name
  client.on("conected", () => {});
  // @ts-expect-error: "state" listeners get states, not numbers
  client.on("state", (state: number) => state);
  // @ts-expect-error: the topic is a string
  client.subscribe(42, () => {});
  // @ts-expect-error: options are checked
  new RealtimeClient(url, { minReconnectDelay: "soon" });
  // @ts-expect-error: closeDecision answers one of three words
  const decision: "retry" = closeDecision(1006);
  void decision;
  return rtt + backoffDelay(1, 100, 1000) + lines.length;
}
