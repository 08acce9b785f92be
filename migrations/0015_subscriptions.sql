-- Platform message-queue subscriptions (CONTRACT §3 v2): a push source may be a queue the service
-- consumes (CTWing MQ over Pulsar, Huawei IoTDA and Alibaba Cloud IoT over AMQP 1.0). `config`
-- holds its connection settings, secrets included (never answered by the API); HTTP push sources
-- keep an empty object.
ALTER TABLE push_sources ADD COLUMN config jsonb NOT NULL DEFAULT '{}'::jsonb
    CHECK (jsonb_typeof(config) = 'object');
ALTER TABLE push_sources DROP CONSTRAINT push_sources_platform_check;
ALTER TABLE push_sources ADD CONSTRAINT push_sources_platform_check
    CHECK (platform IN ('ctwing', 'onenet', 'generic', 'ctwing_mq', 'iotda_amqp', 'aliyun_amqp'));
