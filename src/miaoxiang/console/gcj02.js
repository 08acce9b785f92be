// WGS-84 -> GCJ-02 (the datum Chinese law requires of AMap and Tencent maps), for display only:
// the service stores WGS-84 (docs/map.md). The published standard approximation; points outside
// China are left as they are, as those maps do.

const A = 6378245.0; // Krasovsky 1940 semi-major axis
const EE = 0.00669342162296594323; // its eccentricity squared
const { PI, sin, cos, sqrt, abs } = Math;

const outOfChina = (lat, lon) => lon < 72.004 || lon > 137.8347 || lat < 0.8293 || lat > 55.8271;

function shiftLat(x, y) {
  let r = -100 + 2 * x + 3 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt(abs(x));
  r += ((20 * sin(6 * x * PI) + 20 * sin(2 * x * PI)) * 2) / 3;
  r += ((20 * sin(y * PI) + 40 * sin((y / 3) * PI)) * 2) / 3;
  r += ((160 * sin((y / 12) * PI) + 320 * sin((y * PI) / 30)) * 2) / 3;
  return r;
}

function shiftLon(x, y) {
  let r = 300 + x + 2 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt(abs(x));
  r += ((20 * sin(6 * x * PI) + 20 * sin(2 * x * PI)) * 2) / 3;
  r += ((20 * sin(x * PI) + 40 * sin((x / 3) * PI)) * 2) / 3;
  r += ((150 * sin((x / 12) * PI) + 300 * sin((x / 30) * PI)) * 2) / 3;
  return r;
}

/** [lat, lon] in GCJ-02 of a WGS-84 point. */
export function wgs84ToGcj02(lat, lon) {
  if (outOfChina(lat, lon)) return [lat, lon];
  const radLat = (lat / 180) * PI;
  const magic = 1 - EE * sin(radLat) ** 2;
  const dLat = (shiftLat(lon - 105, lat - 35) * 180) / (((A * (1 - EE)) / (magic * sqrt(magic))) * PI);
  const dLon = (shiftLon(lon - 105, lat - 35) * 180) / ((A / sqrt(magic)) * cos(radLat) * PI);
  return [lat + dLat, lon + dLon];
}
