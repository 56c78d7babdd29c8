"""Portuguese (European) grammar of the sample corpus (format: smoledge.data.lexicon).

Portuguese fuses prepositions with articles (em + o = no, de + a = da), so
noun phrases with an article only follow verbs or non-fusing prepositions
(com, para, sobre); place phrases come ready-made ("no porto").
"""

COMMON = {
    "name": "Ana|João|Beatriz|Tiago|Inês|Rui|Mariana|Pedro|Joana|Gonçalo|Catarina|Duarte|Leonor|Miguel|Sofia|Nuno",
    "surname": "Silva|Santos|Ferreira|Pereira|Oliveira|Costa|Rodrigues|Martins|Sousa|Fernandes|Gonçalves|Lopes",
    "person": [
        "{name}", "{name} {surname}", "o meu vizinho", "a nossa professora", "o velho padeiro", "a minha irmã",
        "uma jovem jornalista", "o presidente da câmara", "o meu avô", "um amigo de infância", "a nova médica",
        "a minha colega", "o dono da loja", "um agricultor da região", "a minha tia", "a diretora da escola",
    ],
    "people": "muitas famílias|os moradores|os turistas|a maioria dos visitantes|os jovens|as crianças|"
              "os nossos vizinhos|os estudantes|as pessoas mais velhas|os comerciantes|muitos leitores",
    "city": "Lisboa|Porto|Coimbra|Braga|Faro|Aveiro|Évora|Setúbal|Viseu|Guimarães|Funchal|Leiria",
    "place": "Madrid|Roma|Viena|Praga|Barcelona|Amesterdão|Copenhaga|Dublin|Atenas|Cracóvia|Sevilha|"
             "Florença|Berlim|Paris|Edimburgo",
    "day": "segunda-feira|terça-feira|quarta-feira|quinta-feira|sexta-feira|sábado|domingo",
    "month": "janeiro|fevereiro|março|abril|maio|junho|julho|agosto|setembro|outubro|novembro|dezembro",
    "season": "na primavera|no verão|no outono|no inverno",
    "ordinal": "primeiro|segundo|terceiro|quarto|quinto|sexto|sétimo|oitavo",
    "when_past": [
        "ontem", "na semana passada", "no sábado passado", "a {day_num} de {month}", "em {month} de {year}",
        "há alguns dias", "no verão passado", "há duas semanas", "em {year}", "no início do ano", "ontem à noite",
    ],
    "when_future": [
        "amanhã", "na próxima semana", "no próximo domingo", "este fim de semana", "em {month}",
        "nos próximos dias", "até ao fim do ano", "a {day_num} de {month}", "no próximo mês", "depois das férias",
    ],
    "when_habit": "todas as manhãs|aos domingos|à noite|durante a semana|todos os dias|{season}|uma vez por mês|"
                  "ao fim de semana|quase todos os dias|depois do trabalho",
    "conn": "no entanto,|claro que|na verdade,|entretanto,|por isso,|no fim,|ao mesmo tempo,|mesmo assim,|"
            "por outro lado,|como resultado,|felizmente,|no início,",
    "s": [
        "{person} acha que isto é só o começo.",
        "ninguém sabe exatamente o que vai acontecer {when_future}.",
        "foi isto que {person} nos contou {when_past}.",
        "{people} concordam que a situação mudou muito desde {year}.",
        "nem sempre é fácil de explicar, mas os números falam por si.",
        "{person} escreveu uma pequena carta ao jornal local sobre o assunto.",
        "mais de {pct} por cento dos inquiridos disseram estar satisfeitos com o resultado.",
        "voltaremos a esta questão num próximo artigo.",
        "{person} lembra-se de uma época em que tudo era muito diferente.",
        "a história começou {when_past}, numa pequena rua de {@city}.",
        "muitos leitores fizeram-nos esta pergunta, por isso aqui ficam algumas respostas.",
        "segundo {person}, o melhor ainda está para vir.",
        "como costuma dizer {person}, a paciência é a chave de tudo.",
        "falámos sobre isso com {person} enquanto bebíamos um café.",
        "a pergunta é simples, mas a resposta não é.",
        "os moradores de {@city} vão lembrar-se deste ano durante muito tempo.",
    ],
}

TOPICS = {
    "weather": {
        "title": [
            "previsão do tempo para {@city}", "{cond} esperada em {@city} {when_future}",
            "porque é que o inverno em {@city} é tão especial", "uma semana de tempestades em {@city}",
            "como ler as nuvens",
        ],
        "cond": "chuva forte|aguaceiros fracos|um sol radioso|nevoeiro cerrado|vento forte|uma tempestade violenta|"
                "neve|granizo|céu limpo|nuvens dispersas|um calor abafado|chuviscos",
        "sky": "cinzento|nublado|azul|escuro|limpo|tempestuoso|pálido|carregado de nuvens",
        "direction": "norte|sul|este|oeste|noroeste|sudeste",
        "adj": "frios|amenos|quentes|húmidos|secos|ventosos|chuvosos|curtos|longos|luminosos|calmos",
        "s": [
            "a previsão para {day} anuncia {cond} em {@city}.",
            "{when_past}, a temperatura em {@city} chegou aos {temp} graus.",
            "depois de {n2_9} dias de mau tempo, o sol voltou finalmente.",
            "{person} leva sempre um guarda-chuva, porque o tempo em {@city} muda muito depressa.",
            "um vento forte de {direction} trouxe {cond} para a costa.",
            "os meteorologistas esperam cerca de {n10_99} milímetros de chuva {when_future}.",
            "o céu estava {sky} {when_past}, e as ruas estavam molhadas e vazias.",
            "será que vai nevar em {@city} este inverno?",
            "{season}, os dias em {@city} são {adj} e muitas vezes {adj}.",
            "{person} viu a previsão do tempo antes de sair de casa.",
            "um nevoeiro cerrado cobriu o vale até às {clock}.",
            "segundo o Instituto Português do Mar e da Atmosfera, {month} foi o mês mais chuvoso desde {year}.",
            "são prováveis trovoadas no norte, enquanto o sul vai continuar seco e soalheiro.",
            "o vento foi tão forte que várias árvores caíram na estrada para {city}.",
            "os agricultores estão preocupados, porque não chove há {n2_9} semanas.",
            "{when_habit}, {person} observa as nuvens e tenta adivinhar o tempo.",
            "hoje o ar está fresco, e a previsão fala de {cond} para {day}.",
            "depois da tempestade, apareceu um arco-íris por cima do rio.",
            "durante a noite, as temperaturas vão descer até aos {temp} graus.",
            "na serra, a primeira neve caiu a {day_num} de {month}.",
            "a estação meteorológica no telhado mede a velocidade do vento de dez em dez minutos.",
        ],
    },
    "cooking": {
        "title": [
            "como fazer {dish} em casa", "uma receita simples: {@dish}", "{@dish} como a minha avó fazia",
            "{n2_9} conselhos para cozinhar melhor", "o que cozinhar no outono",
        ],
        "dish": "uma sopa de legumes|uma tarte de maçã|um molho de tomate|um frango assado|um bolo de limão|"
                "massa fresca|uma caldeirada de peixe|uma salada de batata|um arroz de cogumelos|um bacalhau à Brás|"
                "pastéis de nata|um caldo verde|um arroz doce|uma açorda",
        "veg": "as cebolas|as cenouras|as batatas|os tomates|os cogumelos|as maçãs|os pimentos|as curgetes|"
               "os alhos-franceses|a couve",
        "ingredient": "tomates frescos|duas cebolas|um pouco de manteiga|três ovos|um dente de alho|"
                      "uma chávena de farinha|uma pitada de sal|um fio de azeite|feijão-verde|açúcar mascavado|"
                      "leite morno|ervas frescas|queijo ralado|uma colher de mel|sumo de limão|pimenta preta|"
                      "um punhado de nozes",
        "fat": "um pouco de manteiga|um fio de azeite|uma colher de óleo",
        "tool": "uma frigideira grande|uma panela pesada|uma taça|um tacho de barro|uma forma",
        "side": "um pedaço de pão|uma salada verde|natas frescas|arroz branco|batatas assadas|um copo de vinho verde",
        "produce": "morangos maduros|espargos frescos|cerejas|abóboras|cogumelos silvestres|pêssegos sumarentos|"
                   "maçãs verdes|cenouras novas|ameixas|ervilhas frescas",
        "s": [
            "primeiro, corte {veg} em pedaços pequenos.",
            "aqueça {fat} numa frigideira em lume médio.",
            "junte {ingredient} e mexa com cuidado durante {n2_9} minutos.",
            "leve ao forno durante {minutes} minutos a {oven} graus.",
            "{person} diz que o segredo de uma boa cozinha é a paciência.",
            "sirva bem quente com {side}.",
            "esta receita demora cerca de {n10_99} minutos e dá para {n2_9} pessoas.",
            "a minha avó fazia {@dish} todos os domingos, e a casa inteira cheirava maravilhosamente.",
            "se o molho estiver demasiado espesso, junte um pouco de água.",
            "{season}, o mercado está cheio de cores e de cheiros.",
            "pode guardar o prato no frigorífico durante {n2_9} dias.",
            "prefere {dish} ou {dish}?",
            "prove o molho e tempere com sal e pimenta se for preciso.",
            "uma boa faca torna o trabalho na cozinha muito mais fácil.",
            "a massa tem de descansar pelo menos uma hora antes de ir ao forno.",
            "{person} comprou {produce} no mercado por {price} euros.",
            "deixe o bolo arrefecer antes de o cortar.",
            "misture {ingredient} com {ingredient} numa taça.",
            "a minha primeira tentativa foi um desastre, mas aprendi muito.",
            "cozinhar para os amigos é um dos prazeres simples da vida.",
            "lave bem {veg} e seque com um pano limpo.",
        ],
    },
    "travel": {
        "title": [
            "{n2_9} dias em {@place}", "um fim de semana em {@place}", "de comboio pelo {region}",
            "o que ver em {@place}", "o nosso verão no {region}",
        ],
        "region": "Alentejo|Algarve|Minho|Douro|Ribatejo|"
                  "norte de Espanha|sul de França|Gerês|Oeste|interior do país",
        "transport": "de comboio|de autocarro|de bicicleta|a pé|de barco|de carro|de avião",
        "sight": "a velha catedral|o castelo no alto da colina|o porto|a praça principal|o jardim botânico|"
                 "as muralhas|o museu nacional|a ponte antiga|o mercado municipal|o farol",
        "lodging": "um pequeno hotel perto da estação|uma casa de hóspedes junto ao mar|um albergue da juventude|"
                   "um apartamento no centro histórico|um parque de campismo na floresta|uma quinta fora da aldeia",
        "s": [
            "viajámos {transport} de {city} para {@place} em {n2_9} horas.",
            "a viagem até {@place} demorou mais do que o previsto por causa de uma greve.",
            "{person} reservou {lodging} para {n2_9} noites.",
            "o bilhete custou {price} euros, o que é barato para uma viagem tão longa.",
            "no primeiro dia, visitámos {sight} e {sight}.",
            "a vista lá de cima compensa a longa subida.",
            "se for a {@place}, não perca {sight}.",
            "é melhor viajar {transport} ou {transport}?",
            "o comboio partiu às {clock} e chegou pouco antes da meia-noite.",
            "caminhámos {n10_99} quilómetros ao longo da costa e vimos golfinhos perto das rochas.",
            "as pessoas da terra foram simpáticas e recomendaram-nos um restaurante sossegado.",
            "a nossa guia falava {n2_9} línguas e conhecia todas as ruelas do centro histórico.",
            "{season}, o {region} fica cheio de visitantes, por isso convém reservar cedo.",
            "{person} perdeu uma mala no aeroporto, mas encontrou-a dois dias depois.",
            "a melhor altura para visitar o {region} é em {month}.",
            "não se esqueça do passaporte, de um bom mapa e de sapatos confortáveis.",
            "da janela do comboio vimos lagos, florestas e pequenas aldeias.",
            "ficámos em {lodging} e pagámos {price} euros por noite.",
            "o barco para a ilha parte duas vezes por dia.",
            "viajar devagar é a melhor maneira de compreender um país.",
        ],
    },
    "science": {
        "title": [
            "um novo estudo sobre {subject}", "o que os cientistas descobriram sobre {subject}",
            "uma descoberta em {field}", "como se estuda a natureza", "o futuro da investigação",
        ],
        "field": "astronomia|biologia|química|física|geologia|"
                 "medicina|climatologia|informática|biologia marinha|genética",
        "subject": "os buracos negros|as abelhas|as correntes oceânicas|o cérebro humano|os vulcões|as bactérias|"
                   "a energia solar|o sistema imunitário|os cometas|os recifes de coral|os glaciares|o sono|"
                   "as florestas antigas",
        "scientist": "uma equipa de investigadores|a jovem física|o professor {surname}|a doutora {surname}|"
                     "um grupo de estudantes|o diretor do laboratório",
        "instrument": "um telescópio potente|um novo microscópio|um pequeno satélite|modelos informáticos|"
                      "sensores no fundo do mar|um detetor de partículas",
        "s": [
            "{scientist} publicou um novo estudo sobre {subject} em {year}.",
            "os resultados surpreenderam muitos especialistas.",
            "com {instrument}, {scientist} mediu {n100_999} amostras em {n2_9} meses.",
            "segundo o estudo, {pct} por cento das amostras continham vestígios de água.",
            "{scientist} explicou que são precisos mais dados antes de tirar conclusões.",
            "a experiência foi repetida {n2_9} vezes para confirmar os resultados.",
            "os cientistas estudam {subject} há mais de {n10_99} anos.",
            "porque é que os investigadores dedicam tanto tempo a estudar {subject}?",
            "o novo modelo prevê que o efeito vai duplicar até {future_year}.",
            "no laboratório, cada medição é registada com cuidado.",
            "um pequeno erro nos dados pode mudar toda a conclusão.",
            "a {field} mudou muito desde a chegada dos primeiros computadores.",
            "a equipa espera apresentar os resultados num congresso em {place}.",
            "o financiamento da investigação aumentou {pct} por cento no ano passado.",
            "a teoria foi proposta em {year} e confirmada muito mais tarde.",
            "muitas perguntas continuam em aberto.",
            "as amostras são guardadas a menos {n10_99} graus.",
            "com {instrument}, a equipa observou {subject} com um detalhe nunca visto.",
            "a boa ciência precisa de curiosidade, trabalho cuidadoso e dúvida honesta.",
            "o artigo foi revisto por {n2_9} especialistas independentes antes da publicação.",
        ],
    },
    "sport": {
        "title": [
            "vitória para {team}", "uma grande época para {team}", "um grande dia de desporto",
            "treinar para a maratona", "porque é que {@city} adora desporto",
        ],
        "team": "o clube da terra|o Académico|a seleção nacional|o Desportivo|a equipa da universidade|o Atlético|"
                "a equipa feminina|a equipa de juniores",
        "sport": "o futebol|o ténis|o ciclismo|a natação|a corrida|"
                 "o basquetebol|o remo|o voleibol|o râguebi|o surf",
        "s": [
            "{team} ganhou o jogo por {score} depois de uma primeira parte difícil.",
            "{person} treina {when_habit} e corre cerca de {n10_99} quilómetros por semana.",
            "o estádio estava cheio, com mais de {n10_99} mil adeptos.",
            "no último minuto, o guarda-redes defendeu um penálti.",
            "o treinador não ficou satisfeito com a defesa.",
            "{sport} é o desporto mais popular em {@city}.",
            "a corrida começa às {clock} junto ao rio.",
            "quem vai ganhar o campeonato este ano?",
            "depois de uma lesão em {month}, {person} voltou finalmente aos treinos.",
            "a equipa ganhou {n2_9} dos últimos dez jogos.",
            "os bilhetes para a final custam {price} euros.",
            "os jogadores jovens precisam de tempo, paciência e um bom treinador.",
            "os ciclistas subiram a serra debaixo de uma chuva intensa.",
            "{person} terminou a maratona em {n2_9} horas e {minutes} minutos.",
            "o árbitro parou o jogo durante dez minutos por causa da trovoada.",
            "todos os sábados, as crianças fazem desporto no parque atrás da escola.",
            "{team} perdeu por {score} em casa, e os adeptos foram embora em silêncio.",
            "um bom aquecimento protege os músculos das lesões.",
            "a nova piscina abre às {clock} todas as manhãs.",
            "{person} pratica {sport} desde pequeno.",
        ],
    },
    "city": {
        "title": [
            "a vida em {@city}", "um novo projeto para {@city}", "o que está a mudar em {@city}",
            "{@city} à noite", "um passeio {district}",
        ],
        "building": "uma biblioteca|uma ponte|um parque|uma linha de elétrico|uma piscina|um mercado|"
                    "uma ciclovia|uma escola|um cinema|uma sala de concertos",
        "district": "no centro histórico|na zona do porto|nos subúrbios do norte|na baixa|"
                    "no bairro universitário|na zona oriental",
        "s": [
            "a câmara municipal aprovou {building} {district}.",
            "as rendas em {@city} subiram {pct} por cento em {n2_9} anos.",
            "{person} mora no {ordinal} andar de um prédio antigo perto da estação.",
            "todas as manhãs, milhares de pessoas apanham o autocarro para ir trabalhar.",
            "o trânsito {district} é terrível entre as {clock} e as {clock}.",
            "no mês passado abriu uma pequena padaria na esquina da nossa rua.",
            "{people} querem mais árvores e menos carros {district}.",
            "a nova linha de elétrico vai ligar a baixa aos bairros do norte.",
            "à noite, as ruas de {@city} ficam calmas e silenciosas.",
            "o museu é gratuito no primeiro domingo de cada mês.",
            "{person} gere o mesmo café {district} há {n10_99} anos.",
            "como pode uma grande cidade continuar verde e agradável?",
            "a remodelação do edifício vai custar {n2_9} milhões de euros.",
            "ao sábado, uma feira enche a praça de cores e de barulho.",
            "muitas famílias jovens estão a mudar-se para os subúrbios.",
            "a biblioteca fica aberta até às {clock} durante a época de exames.",
            "{people} queixam-se do barulho das obras {district}.",
            "{building} mudaria a vida de todo o bairro.",
            "em {@city}, quase toda a gente vai para o trabalho de bicicleta.",
            "a velha fábrica junto ao rio está hoje cheia de artistas e pequenas lojas.",
        ],
    },
}

PASSKEY = {
    "intro": "A palavra-passe é {passkey}. Não se esqueça dela.",
    "question": "Qual é a palavra-passe?",
    "answer": "A palavra-passe é {passkey}.",
}

PII = [
    "para mais informações, escreva para {email}.",
    "as perguntas podem ser enviadas para {email} até {day}.",
    "o antigo site estava alojado num servidor com o endereço {ip}.",
    "pode contactar {name} diretamente através de {email}.",
    "a impressora do escritório tem o endereço {private_ip}.",
    "segundo os técnicos, o ataque veio do endereço {ip}.",
    "o router de casa responde em {private_ip}, mas o endereço público era {ip}.",
]

BOILERPLATE = {
    "nav": [
        "Início | Notícias | Tempo | Desporto | Contactos",
        "Início | Quem somos | Blogue | Loja | Contactos",
        "Saltar para o conteúdo principal",
        "Menu | Pesquisar | Entrar | Registar",
    ],
    "cookie": [
        "Este site utiliza cookies para melhorar a sua experiência. Aceitar cookies",
        "Ao continuar a navegar, aceita a nossa política de cookies.",
    ],
    "share": [
        "Partilhar no Facebook | Twitter | WhatsApp | Email",
        "Subscreva a nossa newsletter",
        "Siga-nos no Instagram",
        "Ler mais",
    ],
    "footer": [
        "© {year} {site}. Todos os direitos reservados.",
        "Política de privacidade | Termos de utilização | Definições de cookies",
        "Copyright {year} {site} - Todos os direitos reservados",
    ],
}

SPAM = {
    "phrases": [
        "compre relógios baratos", "melhor preço garantido", "clique aqui agora", "envio grátis hoje",
        "oferta limitada", "encomende já e poupe", "voos baratos hotéis baratos", "ganhe um telemóvel grátis",
        "ganhe dinheiro em casa", "emagreça depressa",
    ],
    "keywords": "barato|promoções|melhor|grátis|desconto|saldos|online|oferta|compre|agora",
}

SITES = [
    "www.tempo-lisboa.pt", "noticias.viveracidade.pt", "www.receitasdecasa.pt", "blog.viajardevagar.pt",
    "www.cienciahoje.pt", "www.desportolocal.pt", "www.jornallocal.pt",
]
