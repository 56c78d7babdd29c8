"""Spanish grammar of the sample corpus (format: smoledge.data.lexicon)."""

COMMON = {
    "name": "Lucía|Pablo|María|Javier|Carmen|Alejandro|Sofía|Diego|"
            "Elena|Sergio|Paula|Andrés|Marta|Íñigo|Nuria|Raúl",
    "surname": "García|Fernández|González|Rodríguez|López|Martínez|Sánchez|Pérez|Gómez|Ruiz|Díaz|Muñoz",
    "person": [
        "{name}", "{name} {surname}", "mi vecino", "nuestra profesora", "el viejo panadero", "mi hermana",
        "una joven periodista", "el alcalde", "mi abuelo", "un amigo de la infancia", "la nueva médica",
        "mi compañera de trabajo", "el dueño de la tienda", "un agricultor de la zona", "mi tía",
        "la directora del colegio",
    ],
    "people": "muchas familias|los vecinos|los turistas|la mayoría de los visitantes|los jóvenes|los niños|"
              "nuestros vecinos|los estudiantes|las personas mayores|los comerciantes|muchos lectores",
    "city": "Madrid|Valencia|Sevilla|Zaragoza|Málaga|Bilbao|Granada|Salamanca|Córdoba|Alicante|Valladolid|Cádiz",
    "place": "Lisboa|Roma|Viena|Praga|Barcelona|Ámsterdam|Copenhague|Dublín|Atenas|Cracovia|Oporto|"
             "Florencia|Berlín|París|Edimburgo",
    "day": "lunes|martes|miércoles|jueves|viernes|sábado|domingo",
    "day_pl": "lunes|martes|miércoles|jueves|viernes|sábados|domingos",
    "month": "enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre",
    "season": "en primavera|en verano|en otoño|en invierno",
    "ordinal": "primer|segundo|tercer|cuarto|quinto|sexto|séptimo|octavo",
    "when_past": [
        "ayer", "la semana pasada", "el {day} pasado", "el {day_num} de {month}", "en {month} de {year}",
        "hace unos días", "el verano pasado", "hace dos semanas", "en {year}", "a principios de año",
        "anoche",
    ],
    "when_future": [
        "mañana", "la semana que viene", "el próximo {day}", "este fin de semana", "en {month}",
        "en los próximos días", "a finales de año", "el {day_num} de {month}", "el mes que viene",
        "después de las vacaciones",
    ],
    "when_habit": "cada mañana|los domingos|por la tarde|durante la semana|todos los {day_pl}|{season}|"
                  "una vez al mes|los fines de semana|casi todos los días|después del trabajo",
    "conn": "sin embargo,|por supuesto,|de hecho,|mientras tanto,|por eso,|al final,|al mismo tiempo,|"
            "aun así,|por otro lado,|como resultado,|por suerte,|al principio,",
    "s": [
        "{person} cree que esto es solo el principio.",
        "nadie sabe exactamente qué pasará {when_future}.",
        "eso es lo que nos contó {person} {when_past}.",
        "{people} coinciden en que la situación ha cambiado mucho desde {year}.",
        "no siempre es fácil de explicar, pero los números hablan por sí solos.",
        "{person} escribió una breve carta al periódico local sobre el tema.",
        "más del {pct} por ciento de los encuestados dijo estar contento con el resultado.",
        "volveremos sobre esta cuestión en un próximo artículo.",
        "{person} recuerda una época en la que todo era muy distinto.",
        "la historia empezó {when_past}, en una calle pequeña de {@city}.",
        "muchos lectores nos preguntaron por esto, así que aquí van algunas respuestas.",
        "según {person}, lo mejor está por llegar.",
        "como suele decir {person}, la paciencia es la clave de todo.",
        "hablamos de ello con {person} mientras tomábamos un café.",
        "la pregunta es sencilla, pero la respuesta no lo es.",
        "los vecinos de {@city} recordarán este año durante mucho tiempo.",
    ],
}

TOPICS = {
    "weather": {
        "title": [
            "el tiempo en {@city}", "se espera {cond} en {@city} {when_future}",
            "por qué el invierno en {@city} es tan especial", "una semana de tormentas en {@city}",
            "cómo leer las nubes",
        ],
        "cond": "lluvia intensa|chubascos débiles|un sol radiante|niebla espesa|viento fuerte|una tormenta violenta|"
                "nieve|granizo|cielos despejados|nubes dispersas|un calor sofocante|llovizna",
        "sky": "gris|nublado|azul|oscuro|despejado|tormentoso|pálido|cubierto de nubes",
        "direction": "norte|sur|este|oeste|noroeste|sureste",
        "adj": "fríos|templados|calurosos|húmedos|secos|ventosos|lluviosos|cortos|largos|luminosos|tranquilos",
        "s": [
            "el pronóstico para el {day} anuncia {cond} en {@city}.",
            "{when_past}, la temperatura en {@city} llegó a {temp} grados.",
            "después de {n2_9} días de mal tiempo, por fin salió el sol.",
            "{person} siempre lleva un paraguas, porque el tiempo en {@city} cambia muy rápido.",
            "un fuerte viento del {direction} trajo {cond} a la costa.",
            "los meteorólogos esperan unos {n10_99} litros por metro cuadrado {when_future}.",
            "el cielo estaba {sky} {when_past}, y las calles estaban mojadas y vacías.",
            "¿nevará en {@city} este invierno?",
            "{season}, los días en {@city} son {adj} y a menudo {adj}.",
            "{person} miró el parte meteorológico antes de salir de casa.",
            "una niebla espesa cubrió el valle hasta las {clock}.",
            "según la Agencia Estatal de Meteorología, {month} fue el mes más lluvioso desde {year}.",
            "se esperan tormentas en el norte, mientras que el sur seguirá seco y soleado.",
            "el viento fue tan fuerte que varios árboles cayeron sobre la carretera de {city}.",
            "los agricultores están preocupados, porque no llueve desde hace {n2_9} semanas.",
            "{when_habit}, {person} observa las nubes e intenta adivinar el tiempo.",
            "hoy el aire está fresco, y el pronóstico habla de {cond} para el {day}.",
            "después de la tormenta, apareció un arcoíris sobre el río.",
            "las temperaturas bajarán hasta {temp} grados durante la noche.",
            "en la montaña, la primera nevada llegó el {day_num} de {month}.",
            "la estación meteorológica del tejado mide la velocidad del viento cada diez minutos.",
        ],
    },
    "cooking": {
        "title": [
            "cómo preparar {dish} en casa", "una receta sencilla: {@dish}", "{@dish} como lo hacía mi abuela",
            "{n2_9} consejos para cocinar mejor", "qué cocinar en otoño",
        ],
        "dish": "una sopa de verduras|una tarta de manzana|una salsa de tomate|un pollo asado|un bizcocho de limón|"
                "una paella|un guiso de pescado|una ensalada de patatas|un arroz con setas|una tortilla de patatas|"
                "unas torrijas|un gazpacho|unas lentejas|un flan casero",
        "veg": "las cebollas|las zanahorias|las patatas|los tomates|las setas|las manzanas|los pimientos|"
               "los calabacines|los puerros|la col",
        "ingredient": "tomates frescos|dos cebollas|un poco de mantequilla|tres huevos|un diente de ajo|"
                      "una taza de harina|una pizca de sal|un chorrito de aceite de oliva|judías verdes|"
                      "azúcar moreno|leche templada|hierbas frescas|queso rallado|una cucharada de miel|"
                      "zumo de limón|pimienta negra|un puñado de nueces",
        "fat": "un poco de mantequilla|un chorrito de aceite de oliva|una cucharada de aceite",
        "tool": "una sartén grande|una olla pesada|un cuenco|una cazuela de barro|un molde",
        "side": "un trozo de pan|una ensalada verde|nata fresca|arroz blanco|patatas asadas|un vaso de sidra",
        "produce": "fresas maduras|espárragos frescos|cerezas|calabazas|setas silvestres|melocotones jugosos|"
                   "manzanas verdes|zanahorias tiernas|ciruelas|guisantes frescos",
        "s": [
            "primero, corta {veg} en trozos pequeños.",
            "calienta {fat} en {tool} a fuego medio.",
            "añade {ingredient} y remueve con cuidado durante {n2_9} minutos.",
            "hornea durante {minutes} minutos a {oven} grados.",
            "{person} dice que el secreto de una buena cocina es la paciencia.",
            "sírvelo caliente con {side}.",
            "esta receta lleva unos {n10_99} minutos y es para {n2_9} personas.",
            "mi abuela preparaba {@dish} todos los {day_pl}, y toda la casa olía de maravilla.",
            "si la salsa está demasiado espesa, añade un poco de agua.",
            "{season}, el mercado está lleno de colores y de olores.",
            "puedes guardar el plato en la nevera durante {n2_9} días.",
            "¿prefieres {dish} o {dish}?",
            "prueba la salsa y añade sal y pimienta si hace falta.",
            "un buen cuchillo hace el trabajo en la cocina mucho más fácil.",
            "la masa tiene que reposar al menos una hora antes de hornearla.",
            "{person} compró {produce} en el mercado por {price} euros.",
            "deja enfriar el bizcocho antes de cortarlo.",
            "mezcla {ingredient} con {ingredient} en {tool}.",
            "mi primer intento fue un desastre, pero aprendí mucho.",
            "cocinar para los amigos es uno de los placeres sencillos de la vida.",
            "lava bien {veg} y sécalas con un paño limpio.",
        ],
    },
    "travel": {
        "title": [
            "{n2_9} días en {@place}", "un fin de semana en {@place}", "viajar en tren por {region}",
            "qué ver en {@place}", "nuestro verano en {region}",
        ],
        "region": "Andalucía|Escocia|el sur de Portugal|la Toscana|Noruega|la costa atlántica|Cantabria|"
                  "Galicia|Asturias|la Provenza",
        "transport": "en tren|en autobús|en bicicleta|a pie|en barco|en coche|en avión",
        "sight": "la vieja catedral|el castillo de la colina|el puerto|la plaza mayor|el jardín botánico|"
                 "las murallas|el museo nacional|el puente romano|el mercado central|el faro",
        "lodging": "un pequeño hotel cerca de la estación|una casa rural junto al mar|un albergue juvenil|"
                   "un piso en el casco antiguo|un camping en el bosque|una granja a las afueras del pueblo",
        "s": [
            "viajamos {transport} desde {city} hasta {@place} en {n2_9} horas.",
            "el viaje a {@place} duró más de lo previsto por culpa de una huelga.",
            "{person} reservó {lodging} para {n2_9} noches.",
            "el billete costó {price} euros, lo cual es barato para un viaje tan largo.",
            "el primer día visitamos {sight} y {sight}.",
            "la vista desde {sight} merece la pena después de la larga subida.",
            "si vas a {@place}, no te pierdas {sight}.",
            "¿es mejor viajar {transport} o {transport}?",
            "el tren salió a las {clock} y llegó justo antes de la medianoche.",
            "caminamos {n10_99} kilómetros por la costa y vimos delfines cerca de las rocas.",
            "la gente del lugar fue muy amable y nos recomendó un restaurante tranquilo.",
            "nuestra guía hablaba {n2_9} idiomas y conocía cada calle del casco antiguo.",
            "{season}, {region} se llena de visitantes, así que conviene reservar pronto.",
            "{person} perdió una maleta en el aeropuerto, pero la encontró dos días después.",
            "la mejor época para visitar {region} es {month}.",
            "no olvides el pasaporte, un buen mapa y unos zapatos cómodos.",
            "desde la ventanilla del tren vimos lagos, bosques y pueblos pequeños.",
            "nos alojamos en {lodging} y pagamos {price} euros por noche.",
            "el barco a la isla sale dos veces al día.",
            "viajar despacio es la mejor manera de entender un país.",
        ],
    },
    "science": {
        "title": [
            "un nuevo estudio sobre {subject}", "lo que los científicos aprendieron sobre {subject}",
            "un descubrimiento en {field}", "cómo investigar {subject}", "el futuro de la ciencia",
        ],
        "field": "astronomía|biología|química|física|geología|medicina|climatología|informática|"
                 "biología marina|genética",
        "subject": "los agujeros negros|las abejas|las corrientes oceánicas|el cerebro humano|los volcanes|"
                   "las bacterias|la energía solar|el sistema inmunitario|los cometas|los arrecifes de coral|"
                   "los glaciares|el sueño|los bosques antiguos",
        "scientist": "un equipo de investigadores|la joven física|el profesor {surname}|la doctora {surname}|"
                     "un grupo de estudiantes|el director del laboratorio",
        "instrument": "un potente telescopio|un nuevo microscopio|un pequeño satélite|modelos informáticos|"
                      "sensores en el fondo del mar|un detector de partículas",
        "s": [
            "{scientist} publicó un nuevo estudio sobre {subject} en {year}.",
            "los resultados sorprendieron a muchos expertos.",
            "con {instrument}, {scientist} midió {n100_999} muestras en {n2_9} meses.",
            "según el estudio, el {pct} por ciento de las muestras contenía restos de agua.",
            "{scientist} explicó que hacen falta más datos antes de sacar conclusiones.",
            "el experimento se repitió {n2_9} veces para comprobar los resultados.",
            "los científicos llevan más de {n10_99} años estudiando {subject}.",
            "¿por qué dedican los investigadores tanto tiempo a estudiar {subject}?",
            "el nuevo modelo predice que el efecto se duplicará antes de {future_year}.",
            "en el laboratorio, cada medición se anota con cuidado.",
            "un pequeño error en los datos puede cambiar toda la conclusión.",
            "la {field} ha cambiado mucho desde la llegada de los primeros ordenadores.",
            "el equipo espera presentar los resultados en un congreso en {place}.",
            "la financiación de la investigación aumentó un {pct} por ciento el año pasado.",
            "la teoría se propuso en {year} y se confirmó mucho más tarde.",
            "muchas preguntas siguen abiertas.",
            "las muestras se guardan a menos {n10_99} grados.",
            "con {instrument}, el equipo observó {subject} con un detalle nunca visto.",
            "la buena ciencia necesita curiosidad, trabajo cuidadoso y una duda honesta.",
            "el artículo fue revisado por {n2_9} expertos independientes antes de publicarse.",
        ],
    },
    "sport": {
        "title": [
            "{team} gana a {team}", "una gran temporada para {team}", "un gran día de deporte",
            "entrenar para el maratón", "por qué a todo {@city} le encanta el deporte",
        ],
        "team": "el club local|el Atlético|la selección nacional|el Deportivo|el equipo universitario|"
                "el Real|el equipo femenino|el equipo juvenil",
        "sport": "el fútbol|el tenis|el ciclismo|la natación|el atletismo|el baloncesto|el remo|"
                 "el voleibol|el rugby|el esquí",
        "s": [
            "{team} ganó el partido {score} tras una primera parte difícil.",
            "{person} entrena {when_habit} y corre unos {n10_99} kilómetros a la semana.",
            "el estadio estaba lleno, con más de {n10_99} mil aficionados.",
            "en el último minuto, el portero paró un penalti.",
            "el entrenador no estaba contento con la defensa.",
            "{sport} es el deporte más popular de {@city}.",
            "la carrera empieza a las {clock} junto al río.",
            "¿quién ganará la liga este año?",
            "tras una lesión en {month}, {person} por fin ha vuelto al campo.",
            "el equipo ha ganado {n2_9} de sus últimos diez partidos.",
            "las entradas para la final cuestan {price} euros.",
            "los jugadores jóvenes necesitan tiempo, paciencia y un buen entrenador.",
            "los ciclistas subieron el puerto bajo una lluvia intensa.",
            "{person} terminó el maratón en {n2_9} horas y {minutes} minutos.",
            "el árbitro detuvo el partido diez minutos por culpa de la tormenta.",
            "todos los {day_pl}, los niños hacen deporte en el parque detrás del colegio.",
            "{team} perdió {score} en casa, y los aficionados se fueron en silencio.",
            "un buen calentamiento protege los músculos de las lesiones.",
            "la nueva piscina abre a las {clock} todas las mañanas.",
            "{person} practica {sport} desde los {n2_9} años.",
        ],
    },
    "city": {
        "title": [
            "la vida en {@city}", "un nuevo proyecto para {@city}", "lo que está cambiando en {@city}",
            "{@city} de noche", "un paseo por {district}",
        ],
        "building": "una biblioteca|un puente|un parque|una línea de tranvía|una piscina|un mercado|"
                    "un carril bici|un colegio|un cine|un auditorio",
        "district": "el casco antiguo|el barrio del puerto|las afueras del norte|el centro|"
                    "el barrio universitario|la zona este",
        "s": [
            "el ayuntamiento aprobó {building} en {district}.",
            "los alquileres en {@city} han subido un {pct} por ciento en {n2_9} años.",
            "{person} vive en el {ordinal} piso de un edificio antiguo cerca de la estación.",
            "cada mañana, miles de personas toman el autobús para ir al trabajo.",
            "el tráfico en {district} es terrible entre las {clock} y las {clock}.",
            "el mes pasado abrió una pequeña panadería en la esquina de nuestra calle.",
            "{people} quieren más árboles y menos coches en {district}.",
            "la nueva línea de tranvía unirá {district} con {district}.",
            "por la noche, las calles de {@city} están tranquilas y silenciosas.",
            "el museo es gratis el primer {day} de cada mes.",
            "{person} lleva {n10_99} años al frente del mismo bar en {district}.",
            "¿cómo puede una gran ciudad seguir siendo verde y agradable?",
            "la reforma del edificio costará {n2_9} millones de euros.",
            "el {day}, un mercadillo llena la plaza de colores y de ruido.",
            "muchas familias jóvenes se mudan a las afueras.",
            "la biblioteca abre hasta las {clock} durante los exámenes.",
            "{people} se quejan del ruido de las obras en {district}.",
            "{building} cambiaría la vida de todo el barrio.",
            "en {@city}, casi todo el mundo va al trabajo en bicicleta.",
            "la vieja fábrica de {district} está llena de artistas y pequeñas tiendas.",
        ],
    },
}

PASSKEY = {
    "intro": "La clave secreta es {passkey}. Recuérdala.",
    "question": "¿Cuál es la clave secreta?",
    "answer": "La clave secreta es {passkey}.",
}

PII = [
    "para más información, escribe a {email}.",
    "las preguntas se pueden enviar a {email} antes del {day}.",
    "la antigua web estaba alojada en un servidor con la dirección {ip}.",
    "puedes contactar con {name} directamente en {email}.",
    "la impresora de la oficina tiene la dirección {private_ip}.",
    "el ataque vino de la dirección {ip}, según los técnicos.",
    "el router de casa responde en {private_ip}, pero la dirección pública era {ip}.",
]

BOILERPLATE = {
    "nav": [
        "Inicio | Noticias | El tiempo | Deportes | Contacto",
        "Inicio | Quiénes somos | Blog | Tienda | Contacto",
        "Saltar al contenido principal",
        "Menú | Buscar | Iniciar sesión | Registrarse",
    ],
    "cookie": [
        "Usamos cookies para mejorar tu experiencia. Aceptar cookies",
        "Si continúas navegando, aceptas nuestra política de cookies.",
    ],
    "share": [
        "Compartir en Facebook | Twitter | WhatsApp | Correo",
        "Suscríbete a nuestro boletín",
        "Síguenos en Instagram",
        "Leer más",
    ],
    "footer": [
        "© {year} {site}. Todos los derechos reservados.",
        "Política de privacidad | Aviso legal | Configuración de cookies",
        "Copyright {year} {site} - Todos los derechos reservados",
    ],
}

SPAM = {
    "phrases": [
        "compra relojes baratos", "el mejor precio garantizado", "haz clic aquí ahora", "envío gratis hoy",
        "oferta limitada", "pide ya y ahorra", "vuelos baratos hoteles baratos", "gana un móvil gratis",
        "gana dinero desde casa", "adelgaza rápido",
    ],
    "keywords": "barato|ofertas|mejor|gratis|descuento|rebajas|online|oferta|compra|ahora",
}

SITES = [
    "www.eltiempo-valencia.es", "noticias.vivirenlaciudad.es", "www.recetasdecasa.es", "blog.viajarlento.es",
    "www.cienciahoy.es", "www.deportelocal.es", "www.diariolocal.es",
]
