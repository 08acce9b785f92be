"""Platform message-queue subscriptions (CONTRACT §3 v2): consumers of CTWing's Pulsar push and of
Huawei IoTDA / Alibaba Cloud AMQP 1.0 queues, acknowledged only after commit."""
