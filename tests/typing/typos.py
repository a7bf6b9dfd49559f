from llmclient import Client, SyncClient


async def main(client: Client) -> None:
    await client.chat("hi", temprature=0.2)
    await client.chat("hi", max_tokens="ten")
    await client.chat("hi", presense_penalty=0.5)
    await client.chat("hi", reasoning_effort="hgih")
    client.stream("hi", servce_tier="flex")
    await client.run("hi", tools=[], logprobs="yes")


def sync_main() -> None:
    sync = SyncClient(defualt_model="fake/echo")
    sync.chat("hi", temprature=0.2)
    sync.chat("hi", max_tokens="ten")
    SyncClient(retry="3")
