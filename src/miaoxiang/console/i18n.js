// Every string the console shows, in one dictionary: key -> [中文, English].
// Enum values of the API (alarm types, statuses, kinds, ...) are keys too, prefixed by their field.

const STRINGS = {
  "app.title": ["秒响 · 消防物联网监控台", "Miaoxiang · fire IoT console"],
  "app.lang": ["English", "中文"],
  "app.langLabel": ["切换到英文", "Switch to Chinese"],
  "app.logout": ["退出", "Log out"],
  "app.role": ["角色", "Role"],
  "app.live": ["实时连接", "Live"],
  "app.reconnecting": ["正在重连…", "Reconnecting…"],
  "app.offline": ["未连接", "Not connected"],
  "app.loading": ["加载中…", "Loading…"],
  "app.none": ["无", "None"],
  "app.more": ["加载更多", "Load more"],
  "app.close": ["关闭", "Close"],
  "app.error": ["出错：{msg}", "Error: {msg}"],
  "app.forbidden": ["当前令牌无此权限", "Your token lacks the role for this"],
  "app.notFound": ["未找到", "Not found"],

  "login.heading": ["登录", "Log in"],
  "login.token": ["访问令牌", "API token"],
  "login.hint": ["使用管理员、值班员或查看者令牌。令牌只保存在本标签页中。",
    "Use an admin, operator or viewer token. It is kept in this browser tab only."],
  "login.submit": ["登录", "Log in"],
  "login.bad": ["令牌无效或已吊销", "Unknown or revoked token"],
  "login.expired": ["令牌已失效，请重新登录", "The token is no longer valid; log in again"],

  "role.admin": ["管理员", "Admin"],
  "role.operator": ["值班员", "Operator"],
  "role.viewer": ["查看者", "Viewer"],

  "nav.label": ["主导航", "Main navigation"],
  "nav.alarms": ["告警", "Alarms"],
  "nav.devices": ["设备", "Devices"],
  "nav.units": ["单位与区域", "Units & regions"],

  "stats.heading": ["设备总览", "Fleet health"],
  "stats.devices": ["设备总数", "Devices"],
  "stats.offline_devices": ["离线设备", "Offline"],
  "stats.active_alarms": ["活动告警", "Active alarms"],
  "stats.unacknowledged": ["未确认告警", "Unacked alarms"],
  "stats.by_status": ["设备状态", "Device status"],
  "stats.by_kind": ["设备类型", "Devices by kind"],
  "stats.by_severity": ["活动告警级别", "Active by severity"],

  "banner.immediate": ["秒响应告警：{n} 条未确认", "Immediate-response alarms: {n} unacknowledged"],
  "banner.show": ["查看", "Show"],
  "sound.on": ["声音：开", "Sound: on"],
  "sound.off": ["声音：关", "Sound: off"],
  "sound.silence": ["消音", "Silence"],
  "sound.silenced": ["声音：已消音", "Sound: silenced"],
  "sound.blocked": ["点击启用声音", "Click to enable sound"],

  "board.heading": ["告警看板", "Alarm board"],
  "board.filter": ["显示", "Show"],
  "board.open": ["未结束的告警", "Open alarms"],
  "board.all": ["全部告警", "All alarms"],
  "board.empty": ["没有告警", "No alarms"],
  "board.time": ["最近时间", "Last seen"],
  "board.type": ["类型", "Type"],
  "board.severity": ["级别", "Severity"],
  "board.response": ["响应", "Response"],
  "board.status": ["状态", "Status"],
  "board.where": ["单位 / 区域", "Unit / region"],
  "board.devices": ["设备", "Devices"],
  "board.count": ["次数", "Count"],
  "board.actions": ["操作", "Actions"],
  "board.detail": ["详情", "Details"],
  "board.refresh": ["刷新", "Refresh"],

  "alarm.ack": ["确认", "Acknowledge"],
  "alarm.acking": ["确认中…", "Acknowledging…"],
  "alarm.resolve": ["处置完毕", "Resolve"],
  "alarm.classification": ["定性", "Classification"],
  "alarm.choose_classification": ["请选择定性", "Choose a classification"],
  "alarm.note": ["备注", "Note"],
  "alarm.heading": ["告警 #{id}", "Alarm #{id}"],
  "alarm.unit": ["单位", "Unit"],
  "alarm.region": ["区域", "Region"],
  "alarm.devices": ["设备", "Devices"],
  "alarm.first_seen": ["首次", "First seen"],
  "alarm.last_seen": ["最近", "Last seen"],
  "alarm.count": ["次数", "Count"],
  "alarm.rule": ["触发规则", "Rule"],
  "alarm.escalation": ["升级级别", "Escalation level"],
  "alarm.timeline": ["证据与处置时间线", "Evidence and handling timeline"],
  "alarm.evidence": ["证据", "Evidence"],
  "alarm.viewerOnly": ["查看者令牌不能确认或处置告警", "A viewer token cannot acknowledge or resolve"],
  "alarm.done": ["已处置", "Resolved"],

  "escalation.0": ["单位联系人", "unit contact"],
  "escalation.1": ["网格员", "grid worker"],
  "escalation.2": ["微型消防站", "micro fire station"],
  "escalation.3": ["消防救援指挥中心", "fire brigade dispatch"],

  "devices.heading": ["设备查询", "Device search"],
  "devices.id": ["设备编号（IMEI）", "Device ID (IMEI)"],
  "devices.open": ["打开", "Open"],
  "devices.kind": ["类型", "Kind"],
  "devices.status": ["状态", "Status"],
  "devices.region": ["区域前缀", "Region prefix"],
  "devices.unit": ["单位编号", "Unit ID"],
  "devices.search": ["查询", "Search"],
  "devices.any": ["全部", "Any"],
  "devices.empty": ["没有符合条件的设备", "No matching devices"],
  "devices.last_seen": ["最后上报", "Last seen"],
  "devices.battery": ["电量", "Battery"],
  "devices.signal": ["信号", "Signal"],
  "devices.location": ["位置", "Location"],
  "devices.cell": ["小区", "Cell"],
  "devices.heartbeat": ["心跳周期", "Heartbeat"],
  "devices.thresholds": ["阈值", "Thresholds"],
  "devices.profile": ["设备模型", "Profile"],
  "devices.lastValues": ["最新数值", "Last values"],
  "devices.readings": ["近期数据", "Recent readings"],
  "devices.metric": ["指标", "Metric"],
  "devices.noReadings": ["暂无数据", "No readings yet"],
  "devices.alarmMark": ["告警事件", "alarm event"],
  "devices.chartLabel": ["{metric} 近期曲线，{n} 个数据点", "{metric}, {n} recent points"],

  "units.heading": ["区域与单位", "Regions and units"],
  "units.root": ["全部区域", "All regions"],
  "units.subregions": ["下级区域", "Subregions"],
  "units.units": ["单位", "Units"],
  "units.name": ["名称", "Name"],
  "units.address": ["地址", "Address"],
  "units.industry": ["行业", "Industry"],
  "units.risk": ["风险等级", "Risk"],
  "units.contacts": ["联系人", "Contacts"],
  "units.count": ["{n} 个单位", "{n} units"],
  "units.empty": ["该区域没有单位", "No units in this region"],
  "units.devices": ["单位设备", "Devices of this unit"],
  "units.alarms": ["单位告警", "Alarms of this unit"],
  "units.truncated": ["仅显示前 {n} 个单位", "Showing the first {n} units"],

  "risk.red": ["红", "Red"],
  "risk.orange": ["橙", "Orange"],
  "risk.yellow": ["黄", "Yellow"],
  "risk.green": ["绿", "Green"],
  "risk.none": ["未评估", "Not rated"],
  "risk.score": ["风险分", "Risk score"],
  "risk.part.alarms": ["未结束告警", "Open alarms"],
  "risk.part.history": ["近90天火警与误报", "Fires and false alarms, 90 days"],
  "risk.part.health": ["设备健康", "Device health"],
  "risk.part.coverage": ["无可用探测器", "No working detector"],
  "risk.trends": ["趋势预警", "Trend warnings"],
  "risk.trendsNone": ["本区域暂无趋势预警", "No trend warnings here"],
  "risk.trendWhy": ["近7天 {count} 起告警，过去 {weeks} 周基线 {baseline} 起/周（泊松尾概率 {p}）",
    "{count} alarms in the last 7 days against a baseline of {baseline}/week over {weeks} weeks (Poisson tail {p})"],
  "risk.export": ["区域报告", "Region report"],
  "risk.exportCsv": ["导出 CSV", "Export CSV"],
  "risk.exportChart": ["导出图表", "Export chart"],

  "type.fire": ["火警", "Fire"],
  "type.smoke": ["烟感报警", "Smoke"],
  "type.gas_leak": ["燃气泄漏", "Gas leak"],
  "type.residual_current": ["剩余电流超限", "Residual current"],
  "type.cable_overheat": ["线缆超温", "Cable overheat"],
  "type.arc_fault": ["故障电弧", "Arc fault"],
  "type.overvoltage": ["过压", "Overvoltage"],
  "type.water_pressure_low": ["水压过低", "Low water pressure"],
  "type.offline": ["设备离线", "Offline"],
  "type.network_outage": ["基站区域断网", "Network outage"],
  "type.tamper": ["防拆报警", "Tamper"],
  "type.low_battery": ["低电量", "Low battery"],
  "type.device_fault": ["设备故障", "Device fault"],
  "type.panel_fire": ["主机火警", "Panel fire"],
  "type.panel_fault": ["主机故障", "Panel fault"],
  "type.duty_missed": ["查岗未应答", "Duty check missed"],

  "severity.critical": ["特别严重", "Critical"],
  "severity.major": ["严重", "Major"],
  "severity.minor": ["一般", "Minor"],
  "severity.warning": ["提示", "Warning"],

  "response.immediate": ["秒响应", "Immediate"],
  "response.verify": ["待核实", "Verify"],
  "response.none": ["无需响应", "None"],

  "status.active_unack": ["活动·未确认", "Active, unacked"],
  "status.active_ack": ["活动·已确认", "Active, acked"],
  "status.cleared_unack": ["已恢复·未确认", "Cleared, unacked"],
  "status.cleared_ack": ["已恢复·已确认", "Cleared, acked"],
  "status.resolved": ["已处置", "Resolved"],

  "classification.fire": ["真实火警", "Fire"],
  "classification.false_alarm": ["误报", "False alarm"],
  "classification.test": ["测试", "Test"],
  "classification.fault": ["设备故障", "Fault"],
  "classification.other": ["其他", "Other"],

  "action.raised": ["产生", "raised"],
  "action.repeated": ["重复", "repeated"],
  "action.reopened": ["再次报警", "reopened"],
  "action.upgraded": ["升级响应", "upgraded"],
  "action.acked": ["确认", "acknowledged"],
  "action.escalated": ["升级", "escalated"],
  "action.cleared": ["恢复", "cleared"],
  "action.resolved": ["处置", "resolved"],
  "action.notified": ["通知", "notified"],
  "action.late_report": ["迟到上报（未改变告警）", "late report (alarm unchanged)"],
  "action.responder_acked": ["响应人已收到", "responder acknowledged"],
  "action.arrived": ["已到场", "arrived on site"],
  "action.feedback": ["现场反馈（待确认）", "feedback (to confirm)"],
  "action.dispatched": ["已调派", "dispatched"],
  "action.notification_failed": ["通知失败", "notification failed"],
  "clock.skew": ["设备时钟超前", "Device clock ahead"],
  "clock.skewTitle": ["设备时间超前 {s} 秒，已按接收时间记录（自 {since}）",
    "The device's time was {s} s ahead; recorded at the receive time (since {since})"],
  "clock.skewEvidence": ["设备时间超前 {s} 秒（设备报 {device}），已按接收时间记录",
    "The device's time was {s} s ahead (it said {device}); recorded at the receive time"],

  "kind.smoke": ["独立烟感", "Smoke alarm"],
  "kind.gas": ["可燃气体探测器", "Gas detector"],
  "kind.electrical": ["电气火灾监控", "Electrical monitor"],
  "kind.uitd": ["用户信息传输装置", "Transmission device (UITD)"],
  "kind.water": ["消防水压/液位", "Water pressure/level"],

  "devstatus.online": ["在线", "Online"],
  "devstatus.offline": ["离线", "Offline"],
  "devstatus.alarm": ["报警", "Alarm"],
  "devstatus.fault": ["故障", "Fault"],
  "devstatus.unknown": ["未知", "Unknown"],

  "event.heartbeat": ["心跳", "heartbeat"],
  "event.report": ["定时上报", "report"],
  "event.alarm": ["报警", "alarm"],
  "event.alarm_clear": ["报警恢复", "alarm cleared"],
  "event.fault": ["故障", "fault"],
  "event.fault_clear": ["故障恢复", "fault cleared"],
  "event.tamper": ["防拆", "tamper"],
  "event.tamper_clear": ["防拆恢复", "tamper cleared"],
  "event.low_battery": ["低电量", "low battery"],
  "event.test": ["自检", "test"],
  "event.mute": ["消音", "mute"],
  "event.power_fail": ["断电", "power failure"],
  "event.power_restore": ["来电", "power restored"],
  "event.valve_closed": ["阀门关闭", "valve closed"],
  "event.valve_opened": ["阀门打开", "valve opened"],
  "event.breaker_tripped": ["断路器跳闸", "breaker tripped"],
  "event.breaker_closed": ["断路器合闸", "breaker closed"],

  "metric.battery_pct": ["电量 %", "battery %"],
  "metric.battery_mv": ["电池电压 mV", "battery mV"],
  "metric.rsrp_dbm": ["信号强度 dBm", "RSRP dBm"],
  "metric.sinr_db": ["信噪比 dB", "SINR dB"],
  "metric.ecl": ["覆盖等级", "ECL"],
  "metric.smoke_obscuration_pct_m": ["烟雾浓度 %/m", "smoke %/m"],
  "metric.temperature_c": ["温度 °C", "temperature °C"],
  "metric.gas_lel_pct": ["燃气浓度 %LEL", "gas %LEL"],
  "metric.residual_current_ma": ["剩余电流 mA", "residual current mA"],
  "metric.cable_temp_c": ["线缆温度 °C", "cable temperature °C"],
  "metric.voltage_v": ["电压 V", "voltage V"],
  "metric.current_a": ["电流 A", "current A"],
  "metric.power_kw": ["功率 kW", "power kW"],
  "metric.arc_faults": ["电弧次数", "arc faults"],
  "metric.pyrolysis_index": ["热解指数", "pyrolysis index"],
  "metric.pressure_mpa": ["水压 MPa", "pressure MPa"],
  "metric.level_m": ["液位 m", "level m"],
};

const LANGS = ["zh", "en"];
const STORAGE_KEY = "miaoxiang.lang";
let current = localStorage.getItem(STORAGE_KEY) === "en" ? "en" : "zh";

/** The current language code, `zh` or `en`. */
export function lang() {
  return current;
}

/** Switch language, remember it, and retranslate every `data-i18n` element. */
export function setLang(code) {
  current = LANGS.includes(code) ? code : "zh";
  localStorage.setItem(STORAGE_KEY, current);
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  translateStatic(document);
}

/** The string for `key` with `{name}` placeholders filled; the key itself when unknown. */
export function t(key, vars = {}) {
  const entry = STRINGS[key];
  const text = entry ? entry[LANGS.indexOf(current)] : key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** An API enum value in words (`type`, `smoke` -> 烟感报警); the raw value when unknown. */
export function term(field, value) {
  if (value === null || value === undefined || value === "") return "—";
  const key = `${field}.${value}`;
  return key in STRINGS ? t(key) : String(value);
}

/** Whether the dictionary knows `field.value`. */
export function knows(field, value) {
  return `${field}.${value}` in STRINGS;
}

/** Fill `data-i18n` (text), `data-i18n-label` (aria-label) and `data-i18n-placeholder` under `root`. */
export function translateStatic(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}
